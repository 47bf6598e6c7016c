"""What the tests share: real agent processes (:mod:`.agents`), running hubs
(:mod:`.hubs`), OSC clients and the control-plane fixtures (:mod:`.controlplane`), the
in-process twin of the live hub (:mod:`.lockstep`), the no-allocation probe
(:mod:`.alloc`), the browser (:mod:`.web`) and one way to wait (:mod:`.waiting`)."""
