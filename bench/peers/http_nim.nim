## The `http` workload's Nim peer: Nim 1.6's std/asynchttpserver, as its
## documentation's example writes a server: `listen`, then a loop of
## `acceptRequest` with a callback that answers every request with
## `respond(Http200, "Hello, World!", headers)`, the headers being
## `Content-Type: text/plain` (made once; `respond` adds `Content-Length`).
## asynchttpserver itself reads the request line and headers (`recvLineInto`),
## reads a `Content-Length` body, keeps HTTP/1.1 connections alive unless
## `Connection: close` (HTTP/1.0 only with `Connection: keep-alive`), and
## answers a malformed request line with 400. It never sets TCP_NODELAY and
## gives no hook to set it on accepted sockets before their first request,
## so this peer runs without it (one response per request in flight, so
## Nagle never holds one back here).
##
## Usage: http_nim [PORT] (0 or absent = any free port), TCP on 127.0.0.1
## only. Prints `listening on 127.0.0.1:PORT` once it is ready.
##
## Built by the `echo_bench` runner, not by cargo:
##   nim c -d:release --hints:off -o:DIR/http_nim http_nim.nim

import std/[asyncdispatch, asynchttpserver, os, strutils]

proc main() =
  var port = 0
  if paramCount() > 1 or (paramCount() == 1 and paramStr(1).startsWith("--")):
    quit("usage: http_nim [PORT] (TCP on 127.0.0.1 only)", 2)
  if paramCount() == 1:
    port = parseInt(paramStr(1))
  let server = newAsyncHttpServer(reuseAddr = true)
  let headers = newHttpHeaders({"Content-Type": "text/plain"})

  proc hello(req: Request) {.async, gcsafe.} =
    await req.respond(Http200, "Hello, World!", headers)

  server.listen(Port(port), "127.0.0.1")
  stdout.writeLine("listening on 127.0.0.1:" & $server.getPort.int)
  stdout.flushFile()

  proc serve() {.async.} =
    while true:
      if server.shouldAcceptRequest():
        await server.acceptRequest(hello)
      else:
        # Out of file descriptors: wait for some to be closed.
        await sleepAsync(500)

  waitFor serve()

main()
