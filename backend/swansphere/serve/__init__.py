"""The SwanSphere server: gRPC session API, OSC control, live rendering and audio output.

- :mod:`~swansphere.serve.live`: the engine-neutral live session (ingest, generation
  thread, bounded patch queue, head-tracked rendering at output time).
- :mod:`~swansphere.serve.codec`: protobuf <-> domain values (the only protobuf user
  besides the gRPC edge itself); generated code is private in ``_generated``.
- :mod:`~swansphere.serve.grpc_service`, :mod:`~swansphere.serve.osc`: the edges.
- :mod:`~swansphere.serve.client`: a Python client.
"""
