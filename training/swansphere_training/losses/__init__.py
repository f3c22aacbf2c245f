"""Training losses, one module per stage: :mod:`.audio` for the FOA-VAE (spectral, adversarial,
feature matching); other stages add their own modules beside it."""
