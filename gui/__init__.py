"""Every widget of PixelCNN Studio (the model package never sees Qt)."""
