//! Every backend's accepted sockets carry TCP_NODELAY, inherited from the listener (no backend
//! sets it per connection), read back from the server's own descriptor table the way compare
//! reads it from any server's.

use ringecho_server::Backend;

#[test]
fn accepted_sockets_inherit_nodelay_on_every_backend() {
    for backend in [
        Backend::Uring,
        Backend::Epoll,
        Backend::EpollLoop,
        Backend::Multishot,
    ] {
        let srv = ringecho_integration::server(backend, |_| {});
        let opts = ringecho_perf::run::sockets::read(std::process::id(), srv.local_addr());
        assert_eq!(
            opts.nodelay,
            Some(true),
            "{}: {}",
            backend.name(),
            opts.describe()
        );
        srv.shutdown().unwrap();
    }
}
