## Nim's own std/asyncnet as a client: `echo_client PORT` connects to
## 127.0.0.1:PORT and runs the protocol in `protocol.nim` against the server
## there. Exits 0 and prints "nim client: ok" when every reply matched.

import std/[asyncdispatch, asyncnet, os, strutils]
import protocol

proc fail(msg: string) =
  stderr.writeLine("nim client: " & msg)
  quit(1)

let lines = [
  ("crlf line from nim", "\r\n"),
  ("lf line from nim", "\n"),
  ("", "\r\n"),
  ("", "\n"),
  ("a lone \r stays in the line", "\n"),
  ("only the last cr is stripped\r", "\r\n"),
  ("utf-8: grüße ✓", "\r\n"),
  ('x'.repeat(100_000), "\n"),
  ("tab\tseparated\tvalues", "\r\n"),
]

proc main(port: Port) {.async.} =
  let sock = newAsyncSocket(buffered = true)
  await sock.connect("127.0.0.1", port)

  # 1. All lines in one write, read the replies while it is in flight.
  var outgoing = ""
  for (text, ending) in lines:
    outgoing.add(text & ending)
  let sendingLines = sock.send(outgoing)
  for i, (text, _) in lines:
    let ending = replyEnding(i)
    if '\r' in text:
      # recvLine would mangle it: compare the raw bytes instead.
      let raw = await sock.recv(text.len + ending.len)
      if raw != text & ending:
        fail("reply " & $i & ": expected " & show(text & ending) & ", got " & show(raw))
    else:
      let got = await sock.recvLine()
      if got == "":
        fail("reply " & $i & ": end of stream")
      if fromRecvLine(got) != text:
        fail("reply " & $i & ": expected " & show(text) & ", got " & show(got))
  await sendingLines

  # 2. The payload, sent and received at the same time.
  let payload = makePayload()
  await sock.send("PAYLOAD " & $payload.len & "\n")
  let sendingPayload = sock.send(payload)
  let echoed = await sock.recv(payload.len)
  await sendingPayload
  if echoed.len != payload.len:
    fail("payload: expected " & $payload.len & " bytes back, got " & $echoed.len)
  let bad = firstPatternMismatch(echoed, 0)
  if bad >= 0:
    fail("payload: byte " & $bad & " differs")

  # 3. Goodbye.
  await sock.send("BYE\r\n")
  let bye = await sock.recvLine()
  if bye != "bye":
    fail("expected " & show("bye") & ", got " & show(bye))
  sock.close()
  echo "nim client: ok, ", lines.len, " lines and ", payload.len, " payload bytes echoed"

if paramCount() != 1:
  fail("usage: echo_client PORT")
waitFor main(Port(parseInt(paramStr(1))))
