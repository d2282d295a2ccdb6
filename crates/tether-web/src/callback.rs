//! One JavaScript function for every client's timer and every socket's reader: the shim
//! (its timer queue, a socket with frames) calls it with a [`Key`], which names what to
//! wake in a table. A wasm-bindgen
//! closure each cost about 0.25 kB of JavaScript heap per client and per socket (the
//! function, its state object, a second function and a finalizer entry; BENCHMARKS.md,
//! "Idle memory"), where a key costs a slot of 8 bytes here.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::task::Waker;

use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsError, JsValue};

/// What a [`Key`] wakes when the function is called with it.
pub(crate) trait Wake {
    fn wake(self: Rc<Self>);
}

/// A socket reader's waker, while it waits for frames.
impl Wake for Cell<Option<Waker>> {
    fn wake(self: Rc<Self>) {
        if let Some(waker) = self.take() {
            waker.wake();
        }
    }
}

thread_local! {
    /// A key's slot holds what it wakes; `None` once the key is dropped (a later key
    /// takes the first free slot: keys are made as clients and sockets are, seldom).
    static TABLE: RefCell<Vec<Option<Weak<dyn Wake>>>> = const { RefCell::new(Vec::new()) };
    /// Of the type of wasm-bindgen-futures' callbacks, whose glue the instance has
    /// already (a closure of a type of its own costs 0.1 kB gzip).
    static FUNCTION: Closure<dyn FnMut(JsValue) -> Result<(), JsError>> = Closure::new(call);
}

fn call(key: JsValue) -> Result<(), JsError> {
    let key = key.as_f64().unwrap_or(-1.0) as usize;
    // Nothing borrowed while it runs: what it wakes may make or drop keys.
    let target = TABLE.with(|t| t.borrow().get(key).cloned().flatten());
    if let Some(target) = target.and_then(|weak| weak.upgrade()) {
        target.wake();
    }
    Ok(())
}

/// Calls `f` with the function, which JavaScript calls with a [`Key::get`].
pub(crate) fn with_function<R>(f: impl FnOnce(&js_sys::Function) -> R) -> R {
    FUNCTION.with(|function| f(function.as_ref().unchecked_ref()))
}

/// A slot in the table; dropping it frees the slot. Drop it only once JavaScript can no
/// longer call the function with it (the timer cleared, the socket released): a later
/// key may take the slot.
pub(crate) struct Key(u32);

impl Key {
    pub(crate) fn new(target: Weak<dyn Wake>) -> Key {
        TABLE.with(|t| {
            let mut slots = t.borrow_mut();
            let key = match slots.iter().position(Option::is_none) {
                Some(free) => free,
                None => {
                    slots.push(None);
                    slots.len() - 1
                }
            };
            slots[key] = Some(target);
            Key(key as u32)
        })
    }

    pub(crate) fn get(&self) -> u32 {
        self.0
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        TABLE.with(|t| {
            if let Some(slot) = t.borrow_mut().get_mut(self.0 as usize) {
                *slot = None;
            }
        });
    }
}
