## The interop protocol shared by `echo_client.nim` and `echo_server.nim`.
## `tests/interop_nim.rs` implements the same protocol in Rust; keep both in sync.
##
## 1. The client sends text lines; the server answers each line with the same
##    text, ended by "\r\n" when the line's index is even and by "\n" when odd.
## 2. The client sends `PAYLOAD <n>\n`, then `n` bytes of `patternByte`; the
##    server echoes the bytes as they arrive while the client is still sending.
## 3. The client sends `BYE\r\n`; the server answers with `bye` and closes
##    (a Nim server adds the `serverFarewell` lines, see below).
##
## Nim's `recvLine` treats a lone '\r' as a line end and drops the byte after
## it, and it drops a partial line at end of stream, so only Rust ever parses
## lines containing '\r' or a final line without a terminator.

import std/strutils

const
  payloadLen* = 4 * 1024 * 1024 + 4001 ## Not a multiple of any buffer size.
  echoChunk* = 65536

proc patternByte*(i: int): char =
  ## Deterministic pseudo-random bytes covering all 256 values.
  var x = uint32(i) * 0x9E3779B1'u32
  x = x xor (x shr 15)
  x = x * 0x85EBCA77'u32
  x = x xor (x shr 13)
  char(x shr 24)

proc makePayload*(): string =
  result = newString(payloadLen)
  for i in 0 ..< payloadLen:
    result[i] = patternByte(i)

proc firstPatternMismatch*(data: string, offset: int): int =
  ## Index in `data` of the first byte that differs from the pattern at
  ## `offset + index`, or -1.
  for i in 0 ..< data.len:
    if data[i] != patternByte(offset + i):
      return i
  -1

proc replyEnding*(index: int): string =
  if index mod 2 == 0: "\r\n" else: "\n"

proc fromRecvLine*(line: string): string =
  ## Nim reports an empty line as "\r\n" (and end of stream as "").
  if line == "\r\n": "" else: line

proc show*(s: string): string = s.escape
