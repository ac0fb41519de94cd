#!/usr/bin/env python3
"""A model of the persistent sm_90 kernel's ring (kernels/src/sm90/attention_sm90.cu, kWarpgroups > 1), run under
random interleavings of its warpgroups and its copies: mbarrier phases and parity waits, thread 0's cursor over the
work tiles' key tiles, the work tiles it claims a work tile ahead into a queue, the first warp's lagged refill, each
warpgroup's Q barrier and its next Q copy. It checks that nothing deadlocks, that each warpgroup finds in a stage the
key tile it expects, that no copy overwrites a K/V stage or a Q tile still in use, and that every read of the queue
finds the claim it expects, written before a barrier wait the reader has passed. One arrival stands for a
warpgroup's 128 threads.
  tools/sm90_ring_model.py [RUNS]
"""
import random
import sys


class Barrier:
    """An mbarrier: a phase completes when every arrival is in and every expected byte has landed."""

    def __init__(self, arrivals):
        self.arrivals, self.pending, self.bytes, self.phase = arrivals, arrivals, 0, 0

    def arrive(self, expect_bytes=0):
        self.bytes += expect_bytes
        self.pending -= 1
        self._advance()

    def land(self, size):
        self.bytes -= size
        self._advance()

    def _advance(self):
        if self.pending == 0 and self.bytes == 0:
            self.phase += 1
            self.pending = self.arrivals

    def passed(self, parity):
        """try_wait.parity: the phase of this parity has completed (true for 1 on a fresh barrier)."""
        return self.phase % 2 != parity


def run(works, warpgroups, stages, lag, seed):
    """works: (ring tiles, [tiles each warpgroup computes]) per work tile of one CTA, in order."""
    rnd = random.Random(seed)
    full = [Barrier(1) for _ in range(stages)]
    empty = [Barrier(warpgroups) for _ in range(stages)]
    q_full = [Barrier(1) for _ in range(warpgroups)]
    stage_holds = [None] * stages  # (work, key tile) the stage's last copy brought
    q_holds = [None] * warpgroups  # the work whose Q tile the warpgroup's buffer holds
    copies = []  # in flight: ("kv", stage, (work, tile)) or ("q", warpgroup, work)
    # The queue of claimed work tiles: slot -> the ordinal whose claim it holds (len(works): none left), and the
    # copies issued so far when it was written (a reader must have waited for a later one).
    queue, queue_size = {0: (0, 0)}, 8
    issued = [0]
    cursor = {"work": 0, "tile": 0}

    def enter(work):  # cursor_at: the next work tile's claim, a work tile ahead of the ring
        if work < len(works):
            queue[(work + 1) % queue_size] = (work + 1, issued[0])

    def read_queue(work, waited):  # a queue read, after a wait for the copy numbered `waited`
        held, written_at = queue[work % queue_size]
        assert held == work, ("queue slot", work, held)
        assert work == 0 or written_at < waited, ("queue read before its claim was seen", work)

    def copy_next_kv(stage):  # load_next_kv
        if cursor["work"] >= len(works):
            return
        full[stage].arrive(expect_bytes=1)
        issued[0] += 1
        copies.append(("kv", stage, (cursor["work"], cursor["tile"]), issued[0]))
        cursor["tile"] += 1
        if cursor["tile"] == works[cursor["work"]][0]:
            cursor["work"], cursor["tile"] = cursor["work"] + 1, 0
            enter(cursor["work"])

    def copy_q(warpgroup, work):
        q_full[warpgroup].arrive(expect_bytes=1)
        copies.append(("q", warpgroup, work, None))

    for w in range(warpgroups):
        copy_q(w, 0)
    enter(0)
    for s in range(stages - lag):
        copy_next_kv(s)

    def warpgroup_steps(w):
        """The warpgroup's program; each yield is a point where another warpgroup or a copy may run."""
        stage, parity = 0, 0
        waited = 0  # the latest K/V copy this warpgroup has waited for

        def refill():  # refill_lagged, the first warp's
            if w != 0 or cursor["work"] >= len(works):
                return
            same_round = stage >= lag
            old = stage - lag if same_round else stage + stages - lag
            while not empty[old].passed(parity if same_round else parity ^ 1):
                yield
            copy_next_kv(old)

        for work, (ring_tiles, computed) in enumerate(works):
            read_queue(work, waited)
            while not q_full[w].passed(work % 2):
                yield
            assert q_holds[w] == work, ("Q tile", w, work)
            mine, has_next = computed[w], work + 1 < len(works)
            for tile in range(ring_tiles):
                if tile >= mine:  # given back: the refill, then the tile must land
                    yield from refill()
                while not full[stage].passed(parity):
                    yield
                assert stage_holds[stage][0] == (work, tile), ("stage", w, work, tile, stage_holds[stage])
                waited = max(waited, stage_holds[stage][1])
                if mine == 0 and tile == 0:  # a warpgroup past the queries: its next Q after a wait
                    read_queue(work + 1, waited)
                    if has_next:
                        copy_q(w, work + 1)
                if tile < mine:  # computed: Q·Kᵀ issued, then the refill, then P·V
                    yield from refill()
                    assert q_holds[w] == work, ("Q overwritten in use", w, work, tile)
                    if tile == mine - 1:
                        yield  # the last Q·Kᵀ completes
                        read_queue(work + 1, waited)
                        if has_next:
                            copy_q(w, work + 1)
                    yield
                assert stage_holds[stage][0] == (work, tile), ("stage overwritten in use", w, work, tile)
                empty[stage].arrive()
                stage += 1
                if stage == stages:
                    stage, parity = 0, parity ^ 1

    programs = {w: warpgroup_steps(w) for w in range(warpgroups)}
    for _ in range(10**6):
        if not programs and not copies:
            return
        choice = rnd.choice(list(programs) + (["copy"] if copies else []))
        if choice == "copy":
            kind, where, what, number = copies.pop(rnd.randrange(len(copies)))
            if kind == "kv":
                stage_holds[where] = (what, number)
                full[where].land(1)
            else:
                q_holds[where] = what
                q_full[where].land(1)
        elif next(programs[choice], "done") == "done":
            del programs[choice]
    raise RuntimeError(f"deadlock: {works}")


def random_works(rnd, warpgroups):
    """Non-causal: every warpgroup computes the ring's tiles, or, in a work item that is a part of a last round's
    tile (kernels/src/sm90/work_plan.h), those of one range of warpgroups and the others none. Causal: fewer for
    earlier warpgroups, none for one past the queries; the last warpgroup's are the ring's."""
    causal = rnd.random() < 0.5
    works = []
    for _ in range(rnd.randint(1, 8)):
        ring_tiles = rnd.randint(1, 9)
        computed = [ring_tiles] * warpgroups
        if causal:
            computed = sorted(rnd.randint(0, ring_tiles) for _ in range(warpgroups - 1)) + [ring_tiles]
        elif rnd.random() < 0.5:
            first = rnd.randrange(warpgroups)
            end = rnd.randint(first + 1, warpgroups)
            computed = [ring_tiles if first <= w < end else 0 for w in range(warpgroups)]
        works.append((ring_tiles, computed))
    return works


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    rnd = random.Random(1)
    for seed in range(runs):
        warpgroups, stages = rnd.choice([(3, 6), (4, 12), (4, 8)])  # the kernels' rings; refills lag half of one
        run(random_works(rnd, warpgroups), warpgroups, stages, stages // 2, seed)
    print(f"ok: {runs} random runs")


if __name__ == "__main__":
    main()
