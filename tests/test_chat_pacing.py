"""Token text is paced: sent at once when the pace allows, else gathered until the next tick."""

import asyncio

from asgiref.sync import async_to_sync

from inference.chat.pacing import Paced


def test_deltas_inside_one_interval_go_out_together_in_order():
    async def run():
        sent = []

        async def send(text):
            sent.append(text)

        paced = Paced(send, interval=3600)  # no tick comes during the test
        await paced.add("a")  # nothing sent yet: at once
        await paced.add("b")
        await paced.add("c")
        assert sent == ["a"]
        paced.cancel()
        await paced.flush()  # the answer ended: the rest goes
        await paced.flush()  # nothing twice
        return sent

    assert async_to_sync(run)() == ["a", "bc"]


def test_held_text_goes_out_at_the_next_tick_without_more_deltas():
    async def run():
        sent, second = [], asyncio.Event()

        async def send(text):
            sent.append(text)
            if len(sent) == 2:
                second.set()

        paced = Paced(send, interval=0.05)
        await paced.add("a")
        await paced.add("b")  # held: the engine sends nothing more, the tick must send it
        await asyncio.wait_for(second.wait(), timeout=10)
        return sent

    assert async_to_sync(run)() == ["a", "b"]


def test_a_stopped_answer_sends_nothing_more():
    async def run():
        sent = []

        async def send(text):
            sent.append(text)

        paced = Paced(send, interval=0.05)
        await paced.add("a")
        await paced.add("b")
        paced.cancel()  # Stop: the timer is gone, the held "b" is never sent
        await asyncio.sleep(0.2)  # longer than the interval: a tick would have come by now
        return sent

    assert async_to_sync(run)() == ["a"]
