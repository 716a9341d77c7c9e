## A byte-echo server on Nim's std/asyncnet + asyncdispatch, the way a Nim
## user writes it: one asyncCheck'd proc per client, `recvInto` a 4 KiB
## buffer, then `send` what arrived. The sockets are unbuffered (with a
## buffered socket `recvInto` waits until the whole buffer is filled), as in
## `echo_asyncnet`. Accepted sockets get TCP_NODELAY.
##
## Usage: echo_nim PORT (0 = any free port), TCP on 127.0.0.1 only. Prints
## `listening on 127.0.0.1:PORT` once it is ready.
##
## Built by the `echo_bench` runner, not by cargo:
##   nim c -d:release --hints:off -o:DIR/echo_nim echo_nim.nim

import std/[asyncdispatch, asyncnet, nativesockets, net, os, strutils]

const BufSize = 4096

proc serveClient(client: AsyncSocket) {.async.} =
  var buf = newString(BufSize)
  while true:
    let n = await client.recvInto(addr buf[0], BufSize)
    if n == 0:
      break
    await client.send(addr buf[0], n)
  client.close()

proc serve(server: AsyncSocket) {.async.} =
  while true:
    let client = await server.accept()
    client.setSockOpt(OptNoDelay, true, level = IPPROTO_TCP.toInt)
    asyncCheck serveClient(client)

proc main() =
  var port = 0
  if paramCount() >= 1:
    let last = paramStr(paramCount())
    if last.startsWith("--") or paramCount() > 1:
      quit("usage: echo_nim [PORT] (TCP on 127.0.0.1 only)", 2)
    port = parseInt(last)
  let server = newAsyncSocket(buffered = false)
  server.setSockOpt(OptReuseAddr, true)
  server.bindAddr(Port(port), "127.0.0.1")
  server.listen()
  let (_, bound) = server.getLocalAddr()
  stdout.writeLine("listening on 127.0.0.1:" & $bound.int)
  stdout.flushFile()
  asyncCheck serve(server)
  runForever()

main()
