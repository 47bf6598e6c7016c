"""The audio thread's side of an agent: the engine (model + safety chain + command
queue), the safety chain, the jitter buffer and the block rings; allocation-free after
construction.
"""
