"""Pure codecs both sides of the link speak: RTP, SDP, PCM, the OSC address map, the
zeroconf TXT schema, the installation key, the agent-id rule, the hub-clock flags.
No socket, thread or task here (a test enforces it).
"""
