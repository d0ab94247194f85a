"""Protocol fault decisions: a pure function of (seed, meter, simulated instant, request, repeat), with the shares
of the old shared generator."""

from __future__ import annotations

from simulators.faults import FaultDice, fault_draw

T = 1_790_000_000.0


def test_shares_are_kept() -> None:
    dice = FaultDice(5)
    for share in (0.02, 0.3, 0.5):
        hits = [
            dice.request(f"M{m}", T + 60 * i, bytes([i % 7])).hit("no_answer", share)
            for m in range(20)
            for i in range(1000)
        ]
        assert abs(sum(hits) / len(hits) - share) < 0.01, share
    assert not any(dice.request("M", T + i, b"x").hit("bad_crc", 0.0) for i in range(100))
    assert all(dice.request("M", T + i, b"x").hit("bad_crc", 1.0) for i in range(100))


def test_draws_are_a_pure_function_of_the_request() -> None:
    a, b = FaultDice(9), FaultDice(9)
    # b also serves other meters, another instant and more requests in between: a's decisions do not move.
    got_a = [a.request("A", T, bytes([i])).hit("no_answer", 0.5) for i in range(40)]
    got_b = []
    for i in range(40):
        b.request("B", T, bytes([i]))
        b.request("A", T - 900, bytes([i]))
        got_b.append(b.request("A", T, bytes([i])).hit("no_answer", 0.5))
    assert got_a == got_b
    assert 5 < sum(got_a) < 35
    # Another seed, another fault name: other draws.
    assert [FaultDice(10).request("A", T, bytes([i])).hit("no_answer", 0.5) for i in range(40)] != got_a
    assert [a.request("A", T + 1, bytes([i])).hit("bad_crc", 0.5) for i in range(40)] != got_a


def test_a_repeated_request_at_one_instant_takes_the_next_draw() -> None:
    dice = FaultDice(1)
    draws = [dice.request("A", T, b"same") for _ in range(4)]
    assert [d.occurrence for d in draws] == [0, 1, 2, 3]
    assert len({fault_draw(1, "A", T, b"same", d.occurrence, "no_answer") for d in draws}) == 4
    assert dice.request("A", T + 1, b"same").occurrence == 0  # a new instant starts again
    assert dice.request("A", T, b"same").occurrence == 0  # only the current instant is remembered
