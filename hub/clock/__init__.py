"""What drives the engine block by block: the simulated mode (the hub clocks its agents
in lockstep over RTP), the deployed router (agents on their own sound cards), the
pacer, and the offline rehearsal.
"""
