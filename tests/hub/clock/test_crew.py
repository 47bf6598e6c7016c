"""The rehearsal's crew (``anamnesis.hub.clock.crew``): every job runs exactly once per
share, on the helpers and the caller; the side job ends by the share; an error in any
job is raised in the caller and the crew goes on working; bad sizes are refused."""

from __future__ import annotations

import threading

import pytest

from anamnesis.hub.clock.crew import MAX_THREADS, Crew


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_every_job_runs_once_per_share_and_the_side_job_by_its_end(threads):
    runs: list[int] = []
    names: set[str] = set()
    side_done = threading.Event()

    def job(i: int):
        def run() -> None:
            runs.append(i)                 # list.append is atomic
            names.add(threading.current_thread().name)
        return run

    jobs = [job(i) for i in range(12)]
    with Crew(threads) as crew:
        for _ in range(50):
            side_done.clear()
            crew.begin(side_done.set)
            crew.share(jobs)
            assert side_done.is_set()
    assert sorted(runs) == sorted(list(range(12)) * 50)
    if threads == 1:
        assert names == {threading.current_thread().name}


@pytest.mark.parametrize("where", ["a job", "the side job"])
def test_an_error_reaches_the_caller_and_the_crew_goes_on(where):
    """The side job always runs on the helper; of two jobs, the first waits until the
    other member has started the second, which fails (so each member has one)."""
    raised_on: set[str] = set()

    def boom() -> None:
        raised_on.add(threading.current_thread().name)
        raise RuntimeError("voice failed")

    with Crew(2) as crew:
        for _ in range(20):
            started = threading.Event()

            def second(started: threading.Event = started) -> None:
                started.set()
                boom()

            def first(started: threading.Event = started) -> None:
                started.wait(10.0)

            jobs = [first, second] if where == "a job" else []
            crew.begin(boom if where == "the side job" else (lambda: None))
            with pytest.raises(RuntimeError, match="voice failed"):
                crew.share(jobs)
        ran: list[int] = []
        crew.begin(lambda: ran.append(-1))
        crew.share([lambda i=i: ran.append(i) for i in range(5)])   # still working
        assert sorted(ran) == [-1, 0, 1, 2, 3, 4]
    if where == "the side job":
        assert raised_on == {"rehearsal-crew-1"}


@pytest.mark.parametrize("bad", [0, -1, MAX_THREADS + 1, 1.5, True, "2"])
def test_refuses_a_crew_of_no_or_too_many_threads(bad):
    with pytest.raises(ValueError, match="threads must be a whole number"):
        Crew(bad)
