## Nim's own std/asyncnet over TLS (OpenSSL, `-d:ssl`) as a client:
## `tls_echo_client PORT CAFILE` connects to localhost:PORT with a context
## that verifies the server's chain against CAFILE (`CVerifyPeer`), checks the
## certificate's name (Nim's asyncnet `connect` does not), then runs the
## protocol in `protocol.nim`. Exits 0 and prints "nim tls client: ok" when
## every reply matched.

import std/[asyncdispatch, asyncnet, net, openssl, os, strutils]
import protocol

proc fail(msg: string) =
  stderr.writeLine("nim tls client: " & msg)
  quit(1)

let lines = [
  ("crlf line from nim over tls", "\r\n"),
  ("lf line from nim over tls", "\n"),
  ("", "\r\n"),
  ("", "\n"),
  ("a lone \r stays in the line", "\n"),
  ("only the last cr is stripped\r", "\r\n"),
  ("utf-8: grüße ✓", "\r\n"),
  ('x'.repeat(100_000), "\n"),
  ("tab\tseparated\tvalues", "\r\n"),
]

proc certMatches(sock: AsyncSocket, name: string): bool =
  let cert = SSL_get_peer_certificate(sock.sslHandle)
  if cert.isNil:
    fail("no peer certificate after the handshake")
  const alwaysCheckSubject = 0x1.cuint
  result = X509_check_host(cert, name.cstring, name.len.cint,
                           alwaysCheckSubject, nil) == 1
  X509_free(cert)

proc main(port: Port, caFile: string) {.async.} =
  let ctx = newContext(verifyMode = CVerifyPeer, caFile = caFile)
  let sock = newAsyncSocket(buffered = true)
  wrapSocket(ctx, sock)
  # The handshake runs here; OpenSSL fails it unless the chain verifies.
  await sock.connect("localhost", port)
  if not sock.certMatches("localhost"):
    fail("the server's certificate is not for localhost")
  if sock.certMatches("not-localhost.example"):
    fail("the host name check accepts any name")
  let chain = sock.getPeerCertificates()
  if chain.len == 0:
    fail("getPeerCertificates: empty (chain not verified?)")

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
  echo "nim tls client: ok, ", lines.len, " lines and ", payload.len,
    " payload bytes echoed, ", chain.len, " certificate(s) from the server"

if paramCount() != 2:
  fail("usage: tls_echo_client PORT CAFILE")
waitFor main(Port(parseInt(paramStr(1))), paramStr(2))
