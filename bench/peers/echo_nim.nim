## A byte-echo server on Nim's std/asyncnet + asyncdispatch, the way a Nim
## user writes it: one asyncCheck'd proc per client, `recvInto` a 4 KiB
## buffer, then `send` what arrived. The sockets are unbuffered (with a
## buffered socket `recvInto` waits until the whole buffer is filled), as in
## `echo_asyncnet`. Accepted sockets get TCP_NODELAY.
##
## `--pong` (the `ping` workload): a Redis inline PING server instead, as a
## Nim user writes it: buffered sockets, `recvLine`, then `send "+PONG\r\n"`
## per line.
##
## Usage: echo_nim [--pong] PORT (0 = any free port), TCP on 127.0.0.1 only. Prints
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

proc servePong(client: AsyncSocket) {.async.} =
  while true:
    let line = await client.recvLine()
    if line.len == 0:
      break
    await client.send("+PONG\r\n")
  client.close()

proc serve(server: AsyncSocket, pong: bool) {.async.} =
  while true:
    let client = await server.accept()
    client.setSockOpt(OptNoDelay, true, level = IPPROTO_TCP.toInt)
    if pong:
      asyncCheck servePong(client)
    else:
      asyncCheck serveClient(client)

proc main() =
  var port = 0
  var first = 1
  let pong = paramCount() >= 1 and paramStr(1) == "--pong"
  if pong:
    first = 2
  if paramCount() >= first:
    let last = paramStr(paramCount())
    if last.startsWith("--") or paramCount() > first:
      quit("usage: echo_nim [--pong] [PORT] (TCP on 127.0.0.1 only)", 2)
    port = parseInt(last)
  # Accepted sockets inherit the listener's buffering.
  let server = newAsyncSocket(buffered = pong)
  server.setSockOpt(OptReuseAddr, true)
  server.bindAddr(Port(port), "127.0.0.1")
  server.listen()
  let (_, bound) = server.getLocalAddr()
  stdout.writeLine("listening on 127.0.0.1:" & $bound.int)
  stdout.flushFile()
  asyncCheck serve(server, pong)
  runForever()

main()
