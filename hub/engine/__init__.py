"""Pure block DSP shared live and offline: the routing graph (edges with gain, delay,
filters and lags; sources), the room's impulse responses, the partitioned convolver and
the room coupling of speakers to mics and the listener's ears. No sockets, no tasks.
"""
