"""What clocks an agent's engine: the null clock, a sound card (sounddevice/PortAudio)
and the hub's clock over RTP.
"""
