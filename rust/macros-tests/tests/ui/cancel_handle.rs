// A CancelHandle is one parameter of an async fn.
use ipy_rustasync::CancelHandle;

#[ipy_rustasync::cell(module = "ui")]
mod cell {
    use super::CancelHandle;

    pub fn sync_work(cancel: CancelHandle) -> bool {
        cancel.is_cancelled()
    }

    pub async fn twice_told(first: CancelHandle, second: CancelHandle) {
        first.cancelled().await;
        second.cancelled().await;
    }
}

fn main() {}
