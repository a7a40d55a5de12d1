#!/usr/bin/env python3
"""A client written from docs/protocol.md alone (Python standard library):
derives the host key from the fleet key, signs requests, verifies replies.
Usage: thirdparty_client.py FLEET_KEY_FILE AGENT HOST PORT [PROTOCOL_MD]
With PROTOCOL_MD, first checks its published test vectors (derived host
key, every request and reply MAC). Prints one JSON object per check."""
import base64, hashlib, hmac, json, os, socket, sys, time

fleet_file, agent, host, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def check_vectors(path):
    text = open(path).read()
    block = text.split("## Test vectors", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    kv = [l.split(": ", 1) for l in block.splitlines() if ": " in l]
    fleet_line = next(v for k, v in kv if k == "fleet-key").split()
    host_line = next(v for k, v in kv if k == "host-key").split()
    fsecret = bytes.fromhex(fleet_line[2])
    hk = hmac.new(fsecret, b"selfheal-host-key-v1\n" + host_line[2].encode() + b"\n", hashlib.sha256).digest()
    ok = hk.hex() == host_line[3]
    n = 0
    for k, v in kv:
        if k == "request":
            f = v.split(" ")
            # The short form has 9 fields, the extended one 10 (the fault's
            # age after the fault): the MAC covers every field before it.
            msg = "\n".join(["SH2"] + f[1:-1]) + "\n"
            ok = ok and hmac.new(hk, msg.encode(), hashlib.sha256).hexdigest() == f[-1]
            nonce, key_id = f[-2], f[1]
            n += 1
        if k == "reply":
            f = v.split(" ")
            # The extended reply's age and note follow the output.
            msg = "\n".join(["SH2-reply", key_id, f[1], nonce] + f[2:-1]) + "\n"
            ok = ok and hmac.new(hk, msg.encode(), hashlib.sha256).hexdigest() == f[-1]
            n += 1
    print(json.dumps({"step": "vectors", "verified": ok and n >= 6, "outcome": str(n)}), flush=True)

if len(sys.argv) > 5:
    check_vectors(sys.argv[5])
tag, key_id, secret_hex = open(fleet_file).read().split()
assert tag == "selfheal-fleet-v1"
fleet = bytes.fromhex(secret_hex)
hostkey = hmac.new(fleet, b"selfheal-host-key-v1\n" + agent.encode() + b"\n", hashlib.sha256).digest()

def sign(verb, service, fault, ts, nonce):
    msg = "\n".join(["SH2", key_id, agent, verb, service, fault, str(ts), nonce]) + "\n"
    mac = hmac.new(hostkey, msg.encode(), hashlib.sha256).hexdigest()
    return "SH2 %s %s %s %s %s %d %s %s\n" % (key_id, agent, verb, service, fault, ts, nonce, mac)

def exchange(frame):
    with socket.create_connection((host, port), timeout=20) as s:
        s.sendall(frame.encode())
        buf = b""
        while not buf.endswith(b"\n"):
            b = s.recv(4096)
            if not b:
                break
            buf += b
    return buf.decode()

def verify(reply, nonce):
    f = reply.rstrip("\n").split(" ")
    if len(f) != 10 or f[0] != "SH2":
        return {"reply": reply, "verified": False, "why": "bad shape"}
    _, ag, outcome, origin, code, dur, ms, budget, out, mac = f
    r = {"reply": reply.rstrip("\n"), "outcome": outcome, "origin": origin, "budget": budget,
         "output": "" if out == "-" else base64.b64decode(out).decode(errors="replace")}
    if mac == "-":
        r["verified"] = False
        r["unsigned"] = reply == "SH2 - %s - -1 0 0 - - -\n" % outcome
        return r
    msg = "\n".join(["SH2-reply", key_id, agent, nonce, outcome, origin, code, dur, ms, budget, out]) + "\n"
    want = hmac.new(hostkey, msg.encode(), hashlib.sha256).hexdigest()
    r["verified"] = ag == agent and hmac.compare_digest(want, mac)
    return r

def step(name, verb, service, fault, dt=0, frame_edit=None, frame=None):
    nonce = os.urandom(16).hex()
    if frame is None:
        frame = sign(verb, service, fault, int(time.time()) + dt, nonce)
    else:
        nonce = frame.split(" ")[7]
    sent = frame_edit(frame) if frame_edit else frame
    r = verify(exchange(sent), nonce)
    r["step"] = name
    print(json.dumps(r), flush=True)
    return frame

step("ping", "ping", "-", "-")
first = step("restart", "restart", "demo", "tp-1")
step("restart-again", "restart", "demo", "tp-1")
step("replay-bytes", None, None, None, frame=first)
skew = step("skew", "restart", "demo", "tp-2", dt=62)
step("skew-replay", None, None, None, frame=skew)
# The same fields, re-ordered bytes: service and fault swapped, the MAC kept.
def swap(fr):
    p = fr.split(" "); p[4], p[5] = p[5], p[4]; return " ".join(p)
step("reordered", "restart", "demo", "tp-3", frame_edit=swap)
step("uppercase-mac", "restart", "demo", "tp-4", frame_edit=lambda fr: fr[:-65] + fr[-65:].upper())
step("crlf", "restart", "demo", "tp-5", frame_edit=lambda fr: fr[:-1] + "\r\n")
