"""Cash orders and the daily order inquiry of one KIS account (주식주문(현금), 주식일별주문체결조회),
through :class:`~market.kis.client.KisRest`. Used by the live executor's KIS broker and tested
against the loopback fake KIS.

KIS has no client order id field, so idempotency is kept here: every order carries a client id,
an acknowledged client id is never sent again, and an order whose reply was lost is looked for
in the order inquiry before it is sent again (:meth:`KisOrders.order_cash`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from dataclasses import dataclass

import httpx

from market import krx
from market.kis.client import MORE_PAGES, RATE_LIMITED, KisError, KisRest

log = logging.getLogger(__name__)

ORDER_CASH_PATH = "/uapi/domestic-stock/v1/trading/order-cash"
DAILY_ORDERS_PATH = "/uapi/domestic-stock/v1/trading/inquire-daily-ccld"
REVISE_CANCEL_PATH = "/uapi/domestic-stock/v1/trading/order-rvsecncl"
# 주식주문(현금): 매수 buy / 매도 sell; V: 모의투자 (paper)
ORDER_TR = {
    (False, 1): "TTTC0012U",
    (False, -1): "TTTC0011U",
    (True, 1): "VTTC0012U",
    (True, -1): "VTTC0011U",
}
# 주식일별주문체결조회, within three months (the older TTTC8001R/VTTC8001R were renamed 0081R)
DAILY_ORDERS_TR = {False: "TTTC0081R", True: "VTTC0081R"}
# 주식주문(정정취소): one tr_id for revisions and cancels, told apart by RVSE_CNCL_DVSN_CD
REVISE_CANCEL_TR = {False: "TTTC0013U", True: "VTTC0013U"}
CANCEL = "02"  # RVSE_CNCL_DVSN_CD: 01 정정 (revise), 02 취소 (cancel)
ORD_DVSN_LIMIT, ORD_DVSN_MARKET = "00", "01"  # 지정가, 시장가
SIDE_BY_SLL_BUY = {"01": -1, "02": 1}  # sll_buy_dvsn_cd 매도 / 매수


@dataclass(frozen=True)
class OrderAck:
    """KIS's answer to a cash order (주문번호 ODNO, 주문시각 ORD_TMD, 한국거래소전송주문조직번호)."""

    client_id: str
    odno: str
    ord_tmd: str
    orgno: str
    recovered: bool = False  # found by the order inquiry after a timeout, not by the reply


@dataclass(frozen=True)
class OrderStatus:
    """One row of the daily order inquiry."""

    odno: str
    stock_code: str
    side: int
    qty: int
    price: int
    ord_tmd: str
    filled_qty: int
    avg_price: float
    remaining: int = 0  # rmn_qty 잔여수량: 0 once the order is over (filled or cancelled)
    original: str = ""  # orgn_odno 원주문번호: set on a revision's or a cancel's own row


class KisOrders:
    """The orders of the account in ``rest.config`` (``CANO-ACNT_PRDT_CD``); one instance per
    account and process, since it remembers the client ids it has sent."""

    def __init__(self, rest: KisRest) -> None:
        self.rest = rest
        self._acked: dict[str, OrderAck] = {}  # client id -> ack: never sent again
        self._owned: set[str] = set()  # ODNOs of our acknowledged orders
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"KisOrders({self.rest!r}, {len(self._acked)} acknowledged)"

    def _account(self) -> tuple[str, str]:
        if self.rest.config.account is None:
            raise ValueError("no KIS account configured (VICAP_KIS_ACCOUNT, 'CANO-ACNT_PRDT_CD')")
        cano, _, product = self.rest.config.account.get_secret_value().partition("-")
        if not (cano.isdigit() and product.isdigit()):
            raise ValueError("the KIS account is not of the form 'CANO-ACNT_PRDT_CD' (8 and 2 digits)")
        return cano, product

    async def order_cash(
        self, stock: str, side: int, qty: int, price: int | None = None, client_id: str | None = None
    ) -> OrderAck:
        """A cash order: a limit order at ``price``, a market order without one.

        KIS has no client order id field, so idempotency is ours: ``client_id`` (generated when
        not given) is remembered with the ODNO KIS gave it and a client id already acknowledged
        is never sent again (its ack is returned). When the reply is lost (a timeout, a dropped
        connection) the order may still have reached KIS, so the daily order inquiry is asked
        first for an order of the same stock, side, quantity and price, timed at or after the
        send, whose ODNO we do not own; only if none is there is the order sent again."""
        client_id = client_id or uuid.uuid4().hex
        async with self._lock:  # one order in flight: the inquiry match stays unambiguous
            if client_id in self._acked:
                return self._acked[client_id]
            cano, product = self._account()
            body = {
                "CANO": cano,
                "ACNT_PRDT_CD": product,
                "PDNO": stock,
                "ORD_DVSN": ORD_DVSN_MARKET if price is None else ORD_DVSN_LIMIT,
                "ORD_QTY": str(qty),
                "ORD_UNPR": "0" if price is None else str(price),
                "EXCG_ID_DVSN_CD": "KRX",
            }
            tr_id = ORDER_TR[(self.rest.config.paper, side)]
            for attempt in range(self.rest.config.retries):
                sent_hms = krx.hhmmss(self.rest.market_now_us())
                try:
                    response = await self.rest.call(
                        "cash order", "POST", ORDER_CASH_PATH, tr_id, body=body, retries=1,
                        timeout=self.rest.config.order_timeout_s,
                    )  # fmt: skip
                except (httpx.TimeoutException, httpx.TransportError):
                    log.warning(
                        "order %s: no reply (attempt %d); asking the order inquiry", client_id, attempt + 1
                    )
                    if ack := await self._recover(client_id, stock, side, qty, price, sent_hms):
                        return self._own(ack)
                    continue
                except KisError as exc:
                    if exc.code != RATE_LIMITED:
                        raise
                    await self.rest.sleep(self.rest.config.backoff_s * 2**attempt)  # refused: never placed
                    continue
                out = response.json()["output"]
                return self._own(
                    OrderAck(client_id, out["ODNO"], out["ORD_TMD"], out.get("KRX_FWDG_ORD_ORGNO", ""))
                )
            raise KisError(
                "cash order", 0, "", f"no acknowledgement after {self.rest.config.retries} attempts"
            )

    def _own(self, ack: OrderAck) -> OrderAck:
        self._acked[ack.client_id] = ack
        self._owned.add(ack.odno)
        return ack

    async def _recover(
        self, client_id: str, stock: str, side: int, qty: int, price: int | None, sent_hms: str
    ) -> OrderAck | None:
        """The order that reached KIS though its reply was lost, found by the order inquiry."""
        for row in await self.daily_orders():
            if (
                row.odno not in self._owned
                and not row.original  # a cancel or a revision is not the order we sent
                and (row.stock_code, row.side, row.qty) == (stock, side, qty)
                and (price is None or row.price == price)
                and row.ord_tmd >= sent_hms
            ):
                return OrderAck(client_id, row.odno, row.ord_tmd, "", recovered=True)
        return None

    async def cancel(self, ack: OrderAck) -> OrderAck:
        """Cancel what is left of an acknowledged order (주식주문(정정취소), all of its remaining
        quantity); KIS answers with the cancel's own order number."""
        cano, product = self._account()
        body = {
            "CANO": cano,
            "ACNT_PRDT_CD": product,
            "KRX_FWDG_ORD_ORGNO": ack.orgno,
            "ORGN_ODNO": ack.odno,
            "ORD_DVSN": ORD_DVSN_LIMIT,
            "RVSE_CNCL_DVSN_CD": CANCEL,
            "ORD_QTY": "0",
            "ORD_UNPR": "0",
            "QTY_ALL_ORD_YN": "Y",  # the whole remaining quantity
            "EXCG_ID_DVSN_CD": "KRX",
        }
        tr_id = REVISE_CANCEL_TR[self.rest.config.paper]
        response = await self.rest.call("cancel", "POST", REVISE_CANCEL_PATH, tr_id, body=body)
        out = response.json()["output"]
        return OrderAck(ack.client_id, out["ODNO"], out["ORD_TMD"], out.get("KRX_FWDG_ORD_ORGNO", ""))

    async def daily_orders(self, day: dt.date | None = None, stock: str = "") -> list[OrderStatus]:
        """The day's orders with their fills (주식일별주문체결조회), every page."""
        cano, product = self._account()
        ymd = (day or krx.from_us(self.rest.market_now_us()).date()).strftime("%Y%m%d")
        params = {
            "CANO": cano,
            "ACNT_PRDT_CD": product,
            "INQR_STRT_DT": ymd,
            "INQR_END_DT": ymd,
            "SLL_BUY_DVSN_CD": "00",  # 00 all, 01 sell, 02 buy
            "INQR_DVSN": "00",  # 역순 (newest first)
            "PDNO": stock,
            "CCLD_DVSN": "00",  # filled and unfilled
            "ORD_GNO_BRNO": "",
            "ODNO": "",
            "INQR_DVSN_3": "00",
            "INQR_DVSN_1": "",
            "CTX_AREA_FK100": "",
            "CTX_AREA_NK100": "",
            "EXCG_ID_DVSN_CD": "KRX",
        }
        rows, tr_cont = [], ""
        tr_id = DAILY_ORDERS_TR[self.rest.config.paper]
        while True:
            response = await self.rest.call(
                "order inquiry", "GET", DAILY_ORDERS_PATH, tr_id, params=params, tr_cont=tr_cont
            )
            reply = response.json()
            rows += [_order_status(r) for r in reply.get("output1") or []]
            if response.headers.get("tr_cont", "") not in MORE_PAGES:
                return rows
            params |= {
                "CTX_AREA_FK100": reply.get("ctx_area_fk100", ""),
                "CTX_AREA_NK100": reply.get("ctx_area_nk100", ""),
            }
            tr_cont = "N"


def _order_status(row: dict) -> OrderStatus:
    return OrderStatus(
        odno=row["odno"],
        stock_code=row["pdno"],
        side=SIDE_BY_SLL_BUY[row["sll_buy_dvsn_cd"]],
        qty=int(row["ord_qty"]),
        price=int(float(row["ord_unpr"] or 0)),
        ord_tmd=row["ord_tmd"],
        filled_qty=int(row["tot_ccld_qty"] or 0),
        avg_price=float(row["avg_prvs"] or 0),
        remaining=int(row.get("rmn_qty") or 0),
        original=row.get("orgn_odno") or "",
    )
