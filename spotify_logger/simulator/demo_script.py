"""A ~64 s varied listening session for `spotify-logger simulate` demos.

Tracks are 6-12 s long so a demo with MIN_PLAY_MS of about 4000 shows every case quickly.
"""

from __future__ import annotations

from .items import ad, episode, local_file, track
from .script import Idle, Pause, Play, Resume, Script, Seek


def demo_script() -> Script:
    neon = track("Neon Drive", 8000, ("The Simulators",), "Loopback Nights")
    paper = track("Paper Planes", 10000, ("Mock Orchestra",), "Fixtures")
    tide = track("Slow Tide", 7000, ("The Simulators",), "Loopback Nights")
    quartz = track("Quartz", 12000, ("Fake Band",), "Stubs & Spies")
    coda = track("Coda", 6000, ("Mock Orchestra",), "Fixtures")
    return Script((
        Play(neon, 8000),                      # 0-8 s: played to the end
        Play(paper, 3000),                     # 8-11 s: skipped after 3 s
        Play(tide, 3000), Pause(2000), Resume(4000),  # 11-20 s: pause, then finish
        Play(tide, 7000),                      # 20-27 s: the same track again
        Play(ad(4000), 4000),                  # 27-31 s: an ad (item null)
        Play(quartz, 3000), Seek(8000), Resume(4000),  # 31-38 s: jump ahead, finish
        Play(episode("Simulated Standup", 30000, show="Test Talk"), 5000),  # 38-43 s
        Play(local_file("Garage Tape", 6000), 6000),  # 43-49 s: a local file
        Play(track("Guilty Pleasure", 9000), 6000, private=True),  # 49-55 s: private session
        Idle(3000),                            # 55-58 s: nothing playing (204)
        Play(coda, 6000),                      # 58-64 s: last track, then idle
    ))
