"""What a person hears and sees of the piece: the listen streams, the scopes and the
headphone player of the listener preview.
"""
