//! Running async work from the UI, its result landing in a signal. Deliberately smaller than
//! `LocalResource` and `Action`: each of those brings its own reactive machinery per result
//! type, and the whole first load of the app must stay under 200 KB.

use std::future::Future;

use leptos::prelude::*;
use leptos::task::spawn_local;

/// Runs `work` now; its result appears in the returned signal (`None` until then).
pub fn fetch<T: Send + Sync + 'static>(
    work: impl Future<Output = T> + 'static,
) -> RwSignal<Option<T>> {
    let slot = RwSignal::new(None);
    refetch(slot, work);
    slot
}

/// Runs `work` again into `slot`, emptying it meanwhile.
pub fn refetch<T: Send + Sync + 'static>(
    slot: RwSignal<Option<T>>,
    work: impl Future<Output = T> + 'static,
) {
    slot.set(None);
    spawn_local(async move {
        let result = work.await;
        // The page may have gone meanwhile; then there is nobody to tell.
        let _ = slot.try_set(Some(result));
    });
}

/// Runs `work` unless `busy` says it already runs, keeping `busy` set meanwhile (what a submit
/// button needs: its `disabled` follows `busy`).
pub fn submit(busy: RwSignal<bool>, work: impl Future<Output = ()> + 'static) {
    if busy.get_untracked() {
        return;
    }
    busy.set(true);
    spawn_local(async move {
        work.await;
        let _ = busy.try_set(false);
    });
}
