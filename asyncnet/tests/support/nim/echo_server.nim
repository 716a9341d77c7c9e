## Nim's own std/asyncnet as a server: `echo_server` listens on 127.0.0.1
## with an ephemeral port, prints "PORT <n>" as its first stdout line, serves
## one client with the protocol in `protocol.nim`, then exits: 0 and
## "nim server: ok" after a complete session, 1 otherwise.

import std/[asyncdispatch, asyncnet, strutils]
import protocol

const serverFarewell* = "bye\r\n" &
  "a lone \r stays in the line\n" &  # Rust parses these two, Nim cannot.
  "partial line at end of stream"

proc fail(msg: string) =
  stderr.writeLine("nim server: " & msg)
  quit(1)

proc echoPayload(client: AsyncSocket, len: int) {.async.} =
  var done = 0
  while done < len:
    let chunk = await client.recv(min(echoChunk, len - done))
    if chunk.len == 0:
      fail("payload: end of stream after " & $done & " of " & $len & " bytes")
    let bad = firstPatternMismatch(chunk, done)
    if bad >= 0:
      fail("payload: byte " & $(done + bad) & " differs")
    await client.send(chunk)
    done += chunk.len

proc serve(client: AsyncSocket) {.async.} =
  var replies = 0
  var payloadBytes = 0
  while true:
    let raw = await client.recvLine()
    if raw == "":
      fail("end of stream before BYE")
    let line = fromRecvLine(raw)
    if line.startsWith("PAYLOAD "):
      payloadBytes = parseInt(line["PAYLOAD ".len .. ^1])
      await echoPayload(client, payloadBytes)
    elif line == "BYE":
      await client.send(serverFarewell)
      client.close()
      echo "nim server: ok, ", replies, " lines and ", payloadBytes, " payload bytes echoed"
      return
    else:
      await client.send(line & replyEnding(replies))
      inc replies

proc main() {.async.} =
  let server = newAsyncSocket(buffered = true)
  server.setSockOpt(OptReuseAddr, true)
  server.bindAddr(Port(0), "127.0.0.1")
  server.listen()
  echo "PORT ", uint16(server.getLocalAddr()[1])
  stdout.flushFile()
  let client = await server.accept()
  server.close()
  await serve(client)

waitFor main()
