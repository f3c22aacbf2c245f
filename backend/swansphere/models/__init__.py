"""Neural networks shared by training and serving (one definition each).

Each module holds one network with its config dataclass on top: :mod:`.vae` is the
FOA-VAE and its streaming decoder. Nothing here imports MLflow, argparse or YAML; a
checkpoint is the config (JSON) plus a safetensors state dict.
"""
