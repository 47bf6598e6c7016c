"""The hub as a service: its state and rules (the :class:`~.hub.Hub`, its store and
its errors). No HTTP, no argparse: the fronts in ``api`` and ``cli`` call into it.
"""
