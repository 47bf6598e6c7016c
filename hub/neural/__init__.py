"""Models trained here: a corpus the project synthesises, a streaming waveform VAE, its
training and its export in the nn~ convention (torch, the ``[neural]`` extra, is imported
by the modules that need it, never by this package)."""
