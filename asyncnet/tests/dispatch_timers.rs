//! The dispatcher's timers: `sleep_async` ordering, `with_timeout` (cancels the inner future),
//! `poll(None)` with a pending timer, and `drain(timeout)`.

mod support;

use std::cell::{Cell, RefCell};
use std::future::pending;
use std::io;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use asyncnet::{
    drain, has_pending_operations, poll, sleep_async, spawn, wait_for, with_timeout, Elapsed,
};
use support::{in_fresh_thread, run, DropFlag};

#[test]
fn sleeps_end_in_deadline_order_not_start_order() {
    run(async {
        let order = Rc::new(RefCell::new(Vec::new()));
        // Created together, so their deadlines are 10 ms apart whatever the scheduling.
        let sleeps = [30u64, 10, 20, 0, 40].map(|ms| (ms, sleep_async(Duration::from_millis(ms))));
        let handles: Vec<_> = sleeps
            .into_iter()
            .map(|(ms, sleep)| {
                let o = order.clone();
                spawn(async move {
                    sleep.await;
                    o.borrow_mut().push(ms);
                })
            })
            .collect();
        for h in handles {
            h.await;
        }
        assert_eq!(*order.borrow(), vec![0, 10, 20, 30, 40]);
        Ok(())
    })
}

#[test]
fn a_sleep_lasts_at_least_its_duration() {
    run(async {
        let start = Instant::now();
        let s = sleep_async(Duration::from_millis(15));
        assert!(s.deadline() >= start + Duration::from_millis(15));
        s.await;
        assert!(start.elapsed() >= Duration::from_millis(15));
        Ok(())
    })
}

#[test]
fn a_zero_sleep_completes() {
    run(async {
        sleep_async(Duration::ZERO).await;
        sleep_async(Duration::from_nanos(1)).await;
        Ok(())
    })
}

#[test]
fn a_huge_sleep_does_not_overflow() {
    run(async {
        let r = with_timeout(sleep_async(Duration::MAX), Duration::from_millis(1)).await;
        assert!(r.is_err(), "timed out");
        Ok(())
    })
}

#[test]
fn many_timers_all_fire() {
    run(async {
        let fired = Rc::new(Cell::new(0));
        let handles: Vec<_> = (0..1000u64)
            .map(|i| {
                let f = fired.clone();
                spawn(async move {
                    sleep_async(Duration::from_micros(i * 10)).await;
                    f.set(f.get() + 1);
                })
            })
            .collect();
        for h in handles {
            h.await;
        }
        assert_eq!(fired.get(), 1000);
        Ok(())
    })
}

#[test]
fn with_timeout_returns_the_output_when_the_future_finishes_first() {
    run(async {
        assert_eq!(
            with_timeout(async { 7 }, Duration::from_secs(10)).await,
            Ok(7)
        );
        let r = with_timeout(
            async {
                sleep_async(Duration::from_millis(1)).await;
                "done"
            },
            support::HANG_GUARD,
        )
        .await;
        assert_eq!(r, Ok("done"));
        Ok(())
    })
}

#[test]
fn with_timeout_drops_the_inner_future_when_time_runs_out() {
    run(async {
        let (guard, dropped) = DropFlag::new();
        let finished = Rc::new(Cell::new(false));
        let f = finished.clone();
        let inner = async move {
            let _guard = guard;
            sleep_async(Duration::from_secs(3600)).await;
            f.set(true);
        };
        let r = with_timeout(inner, Duration::from_millis(5)).await;
        assert!(r.is_err(), "timed out");
        assert!(dropped.get(), "the inner future was dropped (cancelled)");
        assert!(!finished.get());
        Ok(())
    })
}

#[test]
fn with_timeout_cancels_its_inner_timer_too() {
    let r = in_fresh_thread(|| {
        let r = wait_for(with_timeout(
            sleep_async(Duration::from_secs(3600)),
            Duration::from_millis(2),
        ));
        // The hour-long timer went with the dropped future: nothing is left pending.
        (r.is_err(), has_pending_operations())
    });
    assert_eq!(r, Ok((true, false)));
}

#[test]
fn elapsed_converts_into_a_timed_out_io_error() {
    run(async {
        let r: io::Result<()> = async {
            with_timeout(pending::<()>(), Duration::from_millis(1)).await?;
            Ok(())
        }
        .await;
        let e = r.expect_err("timed out");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let elapsed = support::source_of::<Elapsed>(&e).expect("Elapsed source");
        assert_eq!(elapsed.to_string(), "operation timed out");
        Ok(())
    })
}

#[test]
fn nested_timeouts_the_inner_one_fires_first() {
    run(async {
        let r = with_timeout(
            with_timeout(pending::<()>(), Duration::from_millis(2)),
            support::HANG_GUARD,
        )
        .await;
        assert!(matches!(r, Ok(Err(_))), "the inner timeout fired: {r:?}");
        Ok(())
    })
}

#[test]
fn poll_none_with_a_pending_timer_fires_it() {
    let r = in_fresh_thread(|| {
        let fired = Rc::new(Cell::new(false));
        let f = fired.clone();
        drop(spawn(async move {
            sleep_async(Duration::from_millis(10)).await;
            f.set(true);
        }));
        let mut polls = 0;
        while !fired.get() {
            // With nothing but the timer, poll(None) waits for it rather than forever.
            poll(None).expect("poll");
            polls += 1;
            assert!(polls < 1000, "poll(None) spun without firing the timer");
        }
        has_pending_operations()
    });
    assert_eq!(r, Ok(false), "the task finished after its timer fired");
}

#[test]
fn poll_with_nothing_pending_returns_at_once() {
    let r = in_fresh_thread(|| {
        poll(None).map_err(|e| e.to_string())?;
        poll(Some(support::HANG_GUARD * 4)).map_err(|e| e.to_string())
    });
    assert_eq!(r, Ok(Ok(())));
}

#[test]
fn drain_runs_until_timers_are_done() {
    let r = in_fresh_thread(|| {
        let fired = Rc::new(Cell::new(0));
        for ms in [1u64, 5, 10] {
            let f = fired.clone();
            drop(spawn(async move {
                sleep_async(Duration::from_millis(ms)).await;
                f.set(f.get() + 1);
            }));
        }
        drain(support::HANG_GUARD).map_err(|e| e.to_string())?;
        Ok::<_, String>((fired.get(), has_pending_operations()))
    });
    assert_eq!(r, Ok(Ok((3, false))));
}

#[test]
fn drain_stops_at_its_timeout_and_leaves_work_pending() {
    let r = in_fresh_thread(|| {
        let fired = Rc::new(Cell::new(false));
        let f = fired.clone();
        drop(spawn(async move {
            sleep_async(Duration::from_secs(3600)).await;
            f.set(true);
        }));
        let start = Instant::now();
        drain(Duration::from_millis(20)).map_err(|e| e.to_string())?;
        Ok::<_, String>((
            start.elapsed() >= Duration::from_millis(20),
            fired.get(),
            has_pending_operations(),
        ))
    });
    assert_eq!(r, Ok(Ok((true, false, true))));
}

#[test]
fn a_dropped_sleep_leaves_no_timer_behind() {
    let r = in_fresh_thread(|| {
        wait_for(async {
            let mut s = sleep_async(Duration::from_secs(3600));
            // Poll it once so that it registers its timer, then drop it.
            let polled = std::future::poll_fn(|cx| {
                let p = std::pin::Pin::new(&mut s);
                Poll::Ready(std::future::Future::poll(p, cx).is_pending())
            })
            .await;
            assert!(polled);
            assert!(has_pending_operations(), "the timer is registered");
            drop(s);
            has_pending_operations()
        })
    });
    assert_eq!(r, Ok(false));
}
