"""The asyncio shell of one agent: the RTP link, OSC, OSCQuery, the stream routes,
zeroconf announcement and rate-limited logging.
"""
