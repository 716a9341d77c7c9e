//! The dispatcher's tasks: `spawn` and `JoinHandle`; failures of detached tasks (reported on
//! stderr by default while the loop goes on, given to a handler, or raised from
//! `run_forever` / `poll` / `drain` / `wait_for`); `abort`, `call_soon`,
//! `has_pending_operations`, and wake-ups from other threads.
//!
//! Tests that leave a loop in a failed state run in a fresh thread, so that the loop of the
//! test's own thread stays clean.

mod support;

use std::cell::{Cell, RefCell};
use std::future::{pending, poll_fn};
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use asyncnet::{
    call_soon, drain, has_pending_operations, poll, run_forever, sleep_async, spawn, wait_for,
    with_timeout, JoinHandle,
};
use support::{in_fresh_thread, raise_task_failures, run, settle, DropFlag};

/// Panic with `message`; typed `()` so that the task's output is `()`.
fn boom(message: &str) {
    panic!("{message}");
}

#[test]
fn spawn_runs_a_task_and_its_handle_gives_the_output() {
    run(async {
        let h = spawn(async { Ok::<_, io::Error>(6 * 7) });
        assert_eq!(h.await?, 42);
        let unit = spawn(async {});
        unit.await;
        let text = spawn(async {
            sleep_async(Duration::from_millis(1)).await;
            Ok::<_, io::Error>(String::from("later"))
        });
        assert_eq!(text.await?, "later");
        Ok(())
    })
}

#[test]
fn wait_for_returns_a_join_handles_output() {
    let h = spawn(async { Ok::<_, io::Error>(5) });
    assert_eq!(wait_for(h).unwrap(), 5);
}

#[test]
fn a_joined_task_that_fails_gives_its_error_to_the_handle_only() {
    let r = in_fresh_thread(|| {
        let h = spawn(async { Err::<(), _>(io::Error::other("handled")) });
        let e = wait_for(h).expect_err("the task's error");
        assert_eq!(e.to_string(), "handled");
        // The loop has nothing left to report.
        run_forever().map_err(|e| e.to_string())
    });
    assert_eq!(r, Ok(Ok(())));
}

#[test]
fn tasks_start_at_the_next_turn_in_spawn_order() {
    run(async {
        let order = Rc::new(RefCell::new(Vec::new()));
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let o = order.clone();
                spawn(async move { o.borrow_mut().push(i) })
            })
            .collect();
        assert!(
            order.borrow().is_empty(),
            "spawn does not run the task at once"
        );
        for h in handles {
            h.await;
        }
        assert_eq!(*order.borrow(), (0..10).collect::<Vec<_>>());
        Ok(())
    })
}

#[test]
fn a_raised_detached_failure_makes_run_forever_return_it() {
    let r = in_fresh_thread(|| {
        raise_task_failures();
        drop(spawn(async {
            sleep_async(Duration::from_millis(1)).await;
            Err::<(), _>(io::Error::new(io::ErrorKind::AddrInUse, "detached boom"))
        }));
        run_forever()
    })
    .expect("no panic");
    let e = r.expect_err("run_forever reports the failure");
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    assert_eq!(e.to_string(), "detached boom");
}

#[test]
fn a_raised_detached_failure_makes_poll_return_it() {
    let r = in_fresh_thread(|| {
        raise_task_failures();
        drop(spawn(async { Err::<(), _>(io::Error::other("poll boom")) }));
        let mut result = Ok(());
        for _ in 0..10 {
            result = poll(Some(Duration::from_millis(10)));
            if result.is_err() {
                break;
            }
        }
        result.map_err(|e| e.to_string())
    });
    assert_eq!(r, Ok(Err(String::from("poll boom"))));
}

#[test]
fn a_raised_detached_failure_makes_drain_return_it() {
    let r = in_fresh_thread(|| {
        raise_task_failures();
        drop(spawn(async {
            sleep_async(Duration::from_millis(1)).await;
            Err::<(), _>(io::Error::other("drain boom"))
        }));
        drain(support::HANG_GUARD * 2).map_err(|e| e.to_string())
    });
    assert_eq!(r, Ok(Err(String::from("drain boom"))));
}

#[test]
fn a_raised_detached_failure_makes_wait_for_panic() {
    let r = in_fresh_thread(|| {
        raise_task_failures();
        drop(spawn(async {
            Err::<(), _>(io::Error::other("wait_for boom"))
        }));
        // Long enough never to end first: the failure is raised at the loop's first turn.
        wait_for(sleep_async(support::HANG_GUARD));
    });
    let message = r.expect_err("wait_for panics");
    assert!(message.contains("wait_for boom"), "{message}");
}

#[test]
fn a_raised_detached_error_from_another_wait_for_is_not_swallowed() {
    let r = in_fresh_thread(|| {
        raise_task_failures();
        drop(spawn(async { Err::<(), _>(io::Error::other("late boom")) }));
        // The main future completes at once; the failure still surfaces.
        let first = std::panic::catch_unwind(|| wait_for(async { settle().await }));
        let later = run_forever();
        (first.is_err(), later.is_err())
    })
    .expect("no panic outside catch_unwind");
    assert!(
        r.0 || r.1,
        "the failure surfaced from neither wait_for nor run_forever"
    );
}

#[test]
fn dropping_the_handle_of_a_task_that_already_failed_raises_the_failure() {
    // The task finishes while its handle is alive; dropping the handle unread detaches the
    // failure, which run_forever and drain must then report even with nothing left to run.
    for via_drain in [false, true] {
        let r = in_fresh_thread(move || {
            raise_task_failures();
            let h = spawn(async { Err::<(), _>(io::Error::other("unlooked boom")) });
            while !h.is_finished() {
                poll(Some(Duration::from_millis(1))).expect("poll");
            }
            drop(h);
            let r = if via_drain {
                drain(support::HANG_GUARD)
            } else {
                run_forever()
            };
            r.map_err(|e| e.to_string())
        });
        assert_eq!(
            r,
            Ok(Err(String::from("unlooked boom"))),
            "via drain: {via_drain}"
        );
    }
}

#[test]
fn a_raised_detached_panic_resumes_its_panic_from_run_forever() {
    let r = in_fresh_thread(|| {
        raise_task_failures();
        drop(spawn(async {
            sleep_async(Duration::from_millis(1)).await;
            boom("task kaboom");
        }));
        let _ = run_forever();
    });
    let message = r.expect_err("the panic is resumed");
    assert!(message.contains("task kaboom"), "{message}");
}

#[test]
fn a_raised_detached_panic_resumes_its_panic_from_wait_for() {
    let r = in_fresh_thread(|| {
        raise_task_failures();
        drop(spawn(async {
            boom("wait kaboom");
        }));
        wait_for(sleep_async(support::HANG_GUARD));
    });
    let message = r.expect_err("the panic is resumed");
    assert!(message.contains("wait kaboom"), "{message}");
}

#[test]
fn awaiting_the_handle_of_a_panicked_task_resumes_the_panic() {
    let r = in_fresh_thread(|| {
        let h = spawn(async {
            boom("joined kaboom");
        });
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wait_for(h)));
        let message = support::panic_message(&*caught.expect_err("resumed"));
        // The panic went to the handle, not to the loop.
        (message, run_forever().is_ok())
    });
    let (message, clean) = r.expect("no panic outside catch_unwind");
    assert!(message.contains("joined kaboom"), "{message}");
    assert!(clean, "a joined panic is not reported a second time");
}

#[test]
fn abort_drops_the_future_of_a_waiting_task() {
    run(async {
        let (guard, dropped) = DropFlag::new();
        let finished = Rc::new(Cell::new(false));
        let f = finished.clone();
        let h = spawn(async move {
            let _guard = guard;
            pending::<()>().await;
            f.set(true);
        });
        settle().await;
        assert!(!dropped.get());
        h.abort();
        assert!(dropped.get(), "abort drops the future at once");
        assert!(!finished.get());
        Ok(())
    })
}

#[test]
fn abort_before_the_first_poll_drops_the_future_unrun() {
    run(async {
        let (guard, dropped) = DropFlag::new();
        let ran = Rc::new(Cell::new(false));
        let r = ran.clone();
        let h = spawn(async move {
            let _guard = guard;
            r.set(true);
        });
        h.abort();
        assert!(dropped.get());
        settle().await;
        assert!(!ran.get(), "an aborted task never runs");
        Ok(())
    })
}

#[test]
fn abort_from_inside_the_task_itself_drops_it_when_it_yields() {
    run(async {
        let (guard, dropped) = DropFlag::new();
        let slot: Rc<RefCell<Option<asyncnet::JoinHandle<()>>>> = Rc::new(RefCell::new(None));
        let s = slot.clone();
        let after = Rc::new(Cell::new(false));
        let a = after.clone();
        let h = spawn(async move {
            let _guard = guard;
            if let Some(me) = s.borrow_mut().take() {
                me.abort();
            }
            support::yield_now().await;
            a.set(true);
        });
        *slot.borrow_mut() = Some(h);
        settle().await;
        settle().await;
        assert!(dropped.get(), "dropped at its next yield");
        assert!(!after.get(), "nothing after the yield ran");
        Ok(())
    })
}

#[test]
fn abort_of_a_task_waiting_on_a_socket_drops_it() {
    run(async {
        let (_client, server) = support::pair(support::Family::V4, true).await?;
        let (guard, dropped) = DropFlag::new();
        let s = server.clone();
        let h = spawn(async move {
            let _guard = guard;
            s.recv_line().await
        });
        settle().await;
        h.abort();
        assert!(dropped.get());
        assert!(
            !server.is_closed(),
            "the socket lives on in its other handles"
        );
        Ok(())
    })
}

#[test]
fn dropping_a_handle_detaches_the_task_which_runs_on() {
    run(async {
        let done = Rc::new(Cell::new(false));
        let d = done.clone();
        drop(spawn(async move {
            sleep_async(Duration::from_millis(2)).await;
            d.set(true);
        }));
        while !done.get() {
            sleep_async(Duration::from_millis(1)).await;
        }
        Ok(())
    })
}

#[test]
fn run_forever_returns_once_the_last_task_finishes_without_io() {
    // The task finishes in the turn's first phase; nothing is left, so the turn must not
    // then wait for I/O that can never come.
    let r = in_fresh_thread(|| {
        drop(spawn(async {}));
        run_forever().map_err(|e| e.to_string())
    });
    assert_eq!(r, Ok(Ok(())));
}

#[test]
fn run_forever_returns_a_raised_failure_while_other_tasks_wait_on_io() {
    // A server: one task waits for connections that never come, another fails at once.
    let r = in_fresh_thread(|| {
        raise_task_failures();
        let server = support::listener(support::Family::V4).expect("listener");
        drop(spawn(async move { server.accept().await.map(|_| ()) }));
        drop(spawn(async {
            Err::<(), _>(io::Error::other("handler boom"))
        }));
        run_forever().map_err(|e| e.to_string())
    });
    assert_eq!(r, Ok(Err(String::from("handler boom"))));
}

#[test]
fn wait_for_panics_with_a_raised_failure_while_its_future_waits_on_io() {
    let r = in_fresh_thread(|| {
        raise_task_failures();
        let server = support::listener(support::Family::V4).expect("listener");
        drop(spawn(async {
            Err::<(), _>(io::Error::other("early boom"))
        }));
        // No connection ever comes: only the failure can end this wait.
        let _ = wait_for(server.accept());
    });
    let message = r.expect_err("wait_for panics");
    assert!(message.contains("early boom"), "{message}");
}

#[test]
fn drain_returns_as_soon_as_nothing_is_pending() {
    let r = in_fresh_thread(|| {
        let ran = Rc::new(Cell::new(false));
        let flag = ran.clone();
        drop(spawn(async move { flag.set(true) }));
        // Far longer than the hang guard: only returning early can pass.
        drain(support::HANG_GUARD * 4).map_err(|e| e.to_string())?;
        Ok::<_, String>((ran.get(), has_pending_operations()))
    });
    assert_eq!(r, Ok(Ok((true, false))));
}

#[test]
fn call_soon_runs_callbacks_in_order_at_the_next_turn() {
    run(async {
        let order = Rc::new(RefCell::new(Vec::new()));
        for i in 0..3 {
            let o = order.clone();
            call_soon(move || o.borrow_mut().push(i));
        }
        assert!(order.borrow().is_empty(), "not run at once");
        settle().await;
        assert_eq!(*order.borrow(), vec![0, 1, 2]);
        Ok(())
    })
}

#[test]
fn call_soon_runs_under_poll() {
    let r = in_fresh_thread(|| {
        let ran = Rc::new(Cell::new(false));
        let r = ran.clone();
        call_soon(move || r.set(true));
        assert!(has_pending_operations());
        poll(Some(Duration::ZERO)).expect("poll");
        ran.get()
    });
    assert_eq!(r, Ok(true));
}

#[test]
fn has_pending_operations_tracks_tasks_timers_and_callbacks() {
    let r = in_fresh_thread(|| {
        assert!(!has_pending_operations(), "a fresh loop has nothing to do");
        call_soon(|| {});
        assert!(has_pending_operations(), "a callback");
        poll(Some(Duration::ZERO)).unwrap();
        assert!(!has_pending_operations());

        let h = spawn(async { sleep_async(Duration::from_millis(5)).await });
        assert!(has_pending_operations(), "a task");
        drop(h);
        run_forever().unwrap();
        assert!(!has_pending_operations(), "all done");

        let h = spawn(pending::<()>());
        assert!(has_pending_operations());
        h.abort();
        assert!(!has_pending_operations(), "an aborted task is gone");
        true
    });
    assert_eq!(r, Ok(true));
}

#[test]
fn a_waker_called_from_another_thread_wakes_the_loop() {
    run(async {
        let (tx, rx) = support::oneshot::<u32>();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(99);
        });
        // No timer of ours is due before the hang guard: only the remote wake-up can end this.
        let h = spawn(async move { Ok::<_, io::Error>(rx.recv().await) });
        let v = with_timeout(h, support::HANG_GUARD)
            .await
            .map_err(io::Error::from)??;
        assert_eq!(v, 99);
        t.join().expect("thread");
        Ok(())
    })
}

#[test]
fn wakers_from_many_threads_wake_their_tasks() {
    run(async {
        let mut threads = Vec::new();
        let mut handles = Vec::new();
        for i in 0..8u32 {
            let (tx, rx) = support::oneshot::<u32>();
            threads.push(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(u64::from(i % 3)));
                tx.send(i);
            }));
            handles.push(spawn(async move { Ok::<_, io::Error>(rx.recv().await) }));
        }
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.await?, i as u32);
        }
        for t in threads {
            t.join().expect("thread");
        }
        Ok(())
    })
}

#[test]
fn a_remote_wake_rouses_run_forever() {
    let r = in_fresh_thread(|| {
        let (tx, rx) = support::oneshot::<&'static str>();
        let got = Rc::new(RefCell::new(None));
        let g = got.clone();
        drop(spawn(async move {
            *g.borrow_mut() = Some(rx.recv().await);
        }));
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send("woken");
        });
        run_forever().expect("run_forever");
        t.join().unwrap();
        let v = *got.borrow();
        v
    });
    assert_eq!(r, Ok(Some("woken")));
}

#[test]
fn wait_for_inside_a_task_panics_instead_of_deadlocking() {
    let r = in_fresh_thread(|| {
        wait_for(async {
            let h = spawn(async {
                let nested = std::panic::catch_unwind(|| wait_for(async { 1 }));
                Ok::<_, io::Error>(nested.is_err())
            });
            h.await
        })
        .map_err(|e| e.to_string())
    });
    assert_eq!(r, Ok(Ok(true)));
}

#[test]
fn by_default_a_detached_failure_is_reported_and_the_loop_goes_on() {
    let r = in_fresh_thread(|| {
        drop(spawn(async {
            Err::<(), _>(io::Error::other("peer sent junk"))
        }));
        drop(spawn(async {
            boom("a bug in one task");
        }));
        // Neither failure ends the loop: later work still runs, nothing is raised.
        let later = wait_for(async {
            sleep_async(Duration::from_millis(5)).await;
            7
        });
        (later, run_forever().is_ok(), has_pending_operations())
    });
    assert_eq!(r, Ok((7, true, false)));
}

#[test]
fn a_failure_handler_gets_every_detached_failure_and_none_of_the_joined() {
    let r = in_fresh_thread(|| {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let log = seen.clone();
        asyncnet::set_task_failure_handler(move |f| log.borrow_mut().push(f.to_string()));
        drop(spawn(async { Err::<(), _>(io::Error::other("first")) }));
        drop(spawn(async {
            boom("second");
        }));
        let joined = spawn(async { Err::<(), _>(io::Error::other("joined")) });
        let joined = wait_for(joined).map_err(|e| e.to_string());
        wait_for(sleep_async(Duration::from_millis(5)));
        let mut seen = seen.borrow().clone();
        seen.sort();
        (joined, seen)
    });
    let (joined, seen) = r.expect("no panic reaches the caller");
    assert_eq!(joined, Err(String::from("joined")));
    assert_eq!(
        seen,
        [
            "a detached task failed: first",
            "a detached task panicked: second"
        ]
    );
}

/// A task that counts its polls, hands out its waker on the first, and finishes at the first
/// poll after `done` is set.
struct Counted {
    polls: Rc<Cell<u32>>,
    waker: Arc<Mutex<Option<Waker>>>,
    done: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

fn spawn_counted(done: bool) -> Counted {
    let polls = Rc::new(Cell::new(0));
    let waker: Arc<Mutex<Option<Waker>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(done));
    let (p, w, d) = (polls.clone(), waker.clone(), done.clone());
    let handle = spawn(poll_fn(move |cx| {
        p.set(p.get() + 1);
        if p.get() == 1 {
            *w.lock().unwrap() = Some(cx.waker().clone());
        }
        if d.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }));
    Counted {
        polls,
        waker,
        done,
        handle,
    }
}

impl Counted {
    /// The waker the task handed out (it has been polled once).
    fn waker(&self) -> Waker {
        self.waker
            .lock()
            .unwrap()
            .clone()
            .expect("the task's waker")
    }

    /// Let the task finish, and wait for it.
    fn finish(self) {
        self.done.store(true, Ordering::SeqCst);
        self.waker().wake();
        wait_for(self.handle);
    }
}

/// Let the loop run whatever is ready: one turn for certain (a short sleep alone could be over
/// at its first poll on a slow machine, and `wait_for` would return before any task ran),
/// then whatever else a millisecond brings.
fn turn() {
    asyncnet::poll(Some(Duration::ZERO)).expect("a turn of the loop");
    wait_for(sleep_async(Duration::from_millis(1)));
}

#[test]
fn a_task_woken_many_times_before_it_runs_is_polled_once_for_all_of_them() {
    let r = in_fresh_thread(|| {
        let task = spawn_counted(false);
        turn();
        let first = task.polls.get();
        let w = task.waker();
        for _ in 0..1000 {
            w.wake_by_ref();
            let clone = w.clone();
            clone.wake();
        }
        turn();
        let after_wakes = task.polls.get();
        let polls = task.polls.clone();
        task.finish();
        (first, after_wakes, polls.get())
    });
    assert_eq!(r, Ok((1, 2, 3)));
}

#[test]
fn a_waker_of_a_finished_task_does_not_poll_the_task_that_took_its_slot() {
    let r = in_fresh_thread(|| {
        let finished = spawn_counted(true);
        turn();
        let stale = finished.waker();
        wait_for(finished.handle);
        // The next task takes the freed slot, with a new generation.
        let task = spawn_counted(false);
        turn();
        stale.wake_by_ref();
        turn();
        let after_stale = task.polls.get();
        task.finish();
        after_stale
    });
    assert_eq!(r, Ok(1));
}

/// Two loops number their first tasks alike (slot 0, generation 1): a waker of one loop's
/// task, called inside the other loop, must reach its own loop and leave the other's task
/// alone.
#[test]
fn a_waker_called_inside_another_loop_wakes_its_own_loops_task_only() {
    let (waker_tx, waker_rx) = std::sync::mpsc::channel();
    let a = std::thread::spawn(move || {
        let task = spawn_counted(false);
        turn();
        waker_tx.send((task.waker(), task.done.clone())).unwrap();
        wait_for(with_timeout(task.handle, support::HANG_GUARD)).is_ok()
    });
    let (a_waker, a_done) = waker_rx.recv().unwrap();
    let b = std::thread::spawn(move || {
        let task = spawn_counted(false);
        wait_for(async {
            sleep_async(Duration::from_millis(1)).await;
            a_done.store(true, Ordering::SeqCst);
            a_waker.wake();
            sleep_async(Duration::from_millis(20)).await;
        });
        let b_polls = task.polls.get();
        task.handle.abort();
        b_polls
    });
    assert_eq!(b.join().unwrap(), 1, "the other loop's task was polled");
    assert!(a.join().unwrap(), "the task was never woken");
}

#[test]
fn a_waker_whose_loop_is_gone_does_nothing() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let task = spawn_counted(false);
        turn();
        tx.send(task.waker()).unwrap();
    })
    .join()
    .unwrap();
    let w = rx.recv().unwrap();
    w.wake_by_ref();
    // Here, on a thread whose loop may have taken the gone loop's number.
    wait_for(async { w.wake() });
}
