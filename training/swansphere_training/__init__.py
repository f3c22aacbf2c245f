"""SwanSphere training: data synthesis, captioning, stage trainers and evaluation.

Imports the runtime package (``swansphere``); the runtime package never imports this one.
"""
