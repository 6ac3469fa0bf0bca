#!/usr/bin/env python3
"""A tiny demo of a shop's order backend for kefu's `fetch` rule (examples/shop/rules/shop.yaml).

    python3 examples/shop/backend.py            # listens on 127.0.0.1:8000

GET /api/orders/<order number> answers JSON such as
    {"order": "20261127000123", "status": "已发货", "eta": {"date": "12月3日"}}
Orders ending in 0 are "not found" (404, so kefu sends the rule's fallback). The request must
carry `Authorization: Bearer <SHOP_TOKEN>` (default demo-token), as the rule sends it.
Standard library only; for trying kefu, not for production.
"""

import json
import os
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = os.environ.get("SHOP_TOKEN", "demo-token")
STATUSES = ["待发货", "已发货", "运输中", "派送中", "已签收"]


class Orders(BaseHTTPRequestHandler):
    def do_GET(self):
        match = re.fullmatch(r"/api/orders/(\d{10,20})", self.path)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.answer(401, {"error": "unauthorized"})
        if not match:
            return self.answer(404, {"error": "no such path"})
        order = match.group(1)
        if order.endswith("0"):
            return self.answer(404, {"error": "no such order"})
        status = STATUSES[int(order) % len(STATUSES)]
        day = 1 + int(order) % 28
        self.answer(200, {"order": order, "status": status, "eta": {"date": f"12月{day}日"}})

    def answer(self, code, body):
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):  # one short line per request
        print(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}")


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 8000), Orders)
    print("demo order backend on http://127.0.0.1:8000/api/orders/<number>")
    server.serve_forever()
