//! The throwaway database servers start and hand out separate databases.

#[test]
fn postgres_starts_and_gives_fresh_databases() {
    let server = dfs_testkit::db::postgres();
    let a = server.fresh_url();
    let b = server.fresh_url();
    assert_ne!(a, b);
    assert!(a.starts_with("postgres://postgres@127.0.0.1:"), "{a}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", server.port())).is_ok());
}

#[test]
fn mongo_starts() {
    let server = dfs_testkit::db::mongo();
    let url = server.fresh_url();
    assert!(url.starts_with("mongodb://127.0.0.1:"), "{url}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", server.port())).is_ok());
}
