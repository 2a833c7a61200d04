"""One door of the fleet load test (tests/runtime/gallery/test_fleet.py): for SECONDS, enroll, verify, identify
and revoke against the gallery at URL, and journal what the store acknowledged.

    python tests/fleet_door.py URL BUNDLE DOOR SECONDS JOURNAL IMAGE...

Journal lines: ``enrolled NAME`` (enroll returned: committed), ``revoked NAME``, ``logged ID``
(a decision row the store returned, or None when it could not be written), ``failed KIND NAME
REASON`` (a call that raised; NAME is ``-`` for verify and identify), ``done``.
The door enrolls and revokes only its own names (DOOR-n), and verifies and identifies anyone.
"""

import random
import sys
import time

from edgedml.errors import EdgeDMLError
from edgedml.runtime import Matcher
from edgedml.runtime.gallery.gallery import Gallery


def main(url, bundle, door, seconds, journal_path, *images):
    rng = random.Random(door)
    matcher = Matcher(bundle, backend="onnxruntime")
    queries = [matcher.embed(image) for image in images]
    mine, number = [], 0
    deadline = time.monotonic() + float(seconds)
    with Gallery(url, matcher, threshold=1.0, door=door) as gallery, open(journal_path, "w") as journal:
        def write(line):
            journal.write(line + "\n")
            journal.flush()

        while time.monotonic() < deadline:
            op = rng.choice(["enroll", "enroll", "verify", "identify", "revoke"])
            name = ""
            try:
                if op == "enroll" or (op == "revoke" and not mine):
                    op, name = "enroll", f"{door}-{number}"
                    number += 1
                    gallery.enroll(name, [rng.choice(images)])
                    mine.append(name)
                    write(f"enrolled {name}")
                elif op == "revoke":
                    name = mine.pop(rng.randrange(len(mine)))
                    assert gallery.remove(name), f"{name} was enrolled here and never revoked"
                    write(f"revoked {name}")
                else:
                    query = rng.choice(queries)
                    if op == "verify":
                        claim = rng.choice(mine) if mine else None
                        if claim is None:
                            continue
                        decision = gallery.verify(query, claim)
                    else:
                        decision = gallery.identify(query, top_k=3)
                    row = gallery.log_decision(op, decision, claimed=decision.name if op == "verify" else None)
                    write(f"logged {row}")
            except EdgeDMLError as exc:  # the name: an enrollment or revocation whose commit is unknown
                write(f"failed {op} {name or '-'} {exc}")
        write("done")


if __name__ == "__main__":
    main(*sys.argv[1:])
