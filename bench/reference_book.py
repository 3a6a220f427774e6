"""A straightforward pure-Python continuous limit order book with price-time priority.

It is the baseline of the matching benchmark and an independent oracle in the engine's tests
(continuous trading only: no auctions, no VI, no daily-limit checks).
"""

from __future__ import annotations

import heapq
from collections import deque


class ReferenceBook:
    def __init__(self) -> None:
        self.bids: dict[int, deque[list[int]]] = {}
        self.asks: dict[int, deque[list[int]]] = {}
        self.bid_heap: list[int] = []  # negated prices
        self.ask_heap: list[int] = []
        self.orders: dict[int, tuple[int, int, list[int]]] = {}  # id -> (side, price, [id, qty])
        self.trades: list[tuple[int, int, int, int]] = []  # (price, volume, aggressor side, aggressor id)

    def _best(self, side: int) -> int | None:
        heap, levels, sign = (self.ask_heap, self.asks, 1) if side == -1 else (self.bid_heap, self.bids, -1)
        while heap:
            price = sign * heap[0]
            if levels.get(price):
                return price
            heapq.heappop(heap)
            levels.pop(price, None)
        return None

    def limit(self, oid: int, side: int, price: int, qty: int) -> None:
        self._match(oid, side, qty, price)

    def market(self, oid: int, side: int, qty: int) -> None:
        self._match(oid, side, qty, None)

    def _match(self, oid: int, side: int, qty: int, limit: int | None) -> None:
        opposite = self.asks if side == 1 else self.bids
        while qty > 0:
            best = self._best(-side)
            if best is None or (limit is not None and (best > limit if side == 1 else best < limit)):
                break
            queue = opposite[best]
            volume = 0
            while qty > 0 and queue:
                resting = queue[0]
                take = min(qty, resting[1])
                resting[1] -= take
                qty -= take
                volume += take
                if resting[1] == 0:
                    queue.popleft()
                    del self.orders[resting[0]]
            self.trades.append((best, volume, side, oid))
        if qty > 0 and limit is not None:
            levels, heap, key = (
                (self.bids, self.bid_heap, -limit) if side == 1 else (self.asks, self.ask_heap, limit)
            )
            if limit not in levels or not levels[limit]:
                levels[limit] = deque()
                heapq.heappush(heap, key)
            entry = [oid, qty]
            levels[limit].append(entry)
            self.orders[oid] = (side, limit, entry)

    def cancel(self, oid: int) -> bool:
        found = self.orders.pop(oid, None)
        if found is None:
            return False
        side, price, entry = found
        (self.bids if side == 1 else self.asks)[price].remove(entry)
        return True
