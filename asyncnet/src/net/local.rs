//! Memory that this thread's sockets share: the buffer pool and the scratch buffer.
#![forbid(unsafe_code)]

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use super::buffer::BufferPool;

/// Size of the scratch buffer, which takes a read when the socket has nothing buffered.
pub(crate) const SCRATCH_SIZE: usize = 64 * 1024;

/// One per thread, kept by every socket of the thread.
#[derive(Debug)]
pub(crate) struct Local {
    /// Empty byte buffers, lent to sockets while they hold bytes (read or write).
    pub(crate) pool: BufferPool,
    /// Takes reads for sockets with nothing buffered; only leftovers are copied out, so
    /// sockets need no buffer of their own between messages.
    pub(crate) scratch: RefCell<Box<[u8]>>,
}

thread_local! {
    static LOCAL: OnceCell<Rc<Local>> = const { OnceCell::new() };
}

/// This thread's shared socket memory, made on first use.
pub(crate) fn local() -> Rc<Local> {
    LOCAL.with(|cell| {
        cell.get_or_init(|| {
            Rc::new(Local {
                pool: BufferPool::default(),
                scratch: RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice()),
            })
        })
        .clone()
    })
}
