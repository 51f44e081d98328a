//! Self-test of the throwaway PostgreSQL fixture (`tests/support/pg.rs`): the shared
//! cluster, per-test databases, the TLS/password cluster and `restart`.

#[path = "support/pg.rs"]
mod pg;

use std::net::{Ipv4Addr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pg::PgCluster;

/// Runs the cluster's `psql` as a client with a connection string (or URL), an optional
/// `PGPASSWORD`, and one SQL command; no ambient `PG*` variables.
fn client(cluster: &PgCluster, conninfo: &str, password: Option<&str>, sql: &str) -> Output {
    let mut cmd = Command::new(cluster.bin_dir().join("psql"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    cmd.env("PGCONNECT_TIMEOUT", "10")
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-d",
            conninfo,
            "-c",
            sql,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run psql")
}

/// The standard output of a client run that must succeed, trimmed.
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "psql failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn shared_cluster_answers_select_1() {
    let started = Instant::now();
    let cluster = PgCluster::shared();
    eprintln!("shared cluster ready after {:?}", started.elapsed());
    assert_eq!(cluster.psql("postgres", "SELECT 1"), "1");
    assert!(cluster.ca_cert().is_none());
    assert!(
        std::ptr::eq(cluster, PgCluster::shared()),
        "one cluster per binary"
    );
    // Reachable over TCP on 127.0.0.1 with trust auth, as the URLs promise.
    let conninfo = format!(
        "postgresql://postgres@127.0.0.1:{}/postgres",
        cluster.port()
    );
    assert_eq!(ok(client(cluster, &conninfo, None, "SELECT 2")), "2");
    // Multi-statement scripts, rows and columns.
    assert_eq!(
        cluster.psql(
            "postgres",
            "SELECT 1, 'a'; SELECT x FROM generate_series(1, 3) AS x"
        ),
        "1|a\n1\n2\n3"
    );
    assert_eq!(
        cluster.psql(
            "postgres",
            "SHOW server_encoding; SHOW fsync; SHOW max_connections"
        ),
        "UTF8\noff\n200"
    );
}

#[test]
fn psql_panics_with_the_error() {
    let cluster = PgCluster::shared();
    let failure = std::panic::catch_unwind(|| cluster.psql("postgres", "SELECT * FROM nowhere"))
        .expect_err("an SQL error must panic");
    let message = failure
        .downcast_ref::<String>()
        .expect("panic message")
        .clone();
    assert!(
        message.contains("relation \"nowhere\" does not exist"),
        "{message}"
    );
}

#[test]
fn databases_are_distinct_and_dropped() {
    let cluster = PgCluster::shared();
    let started = Instant::now();
    let one = cluster.database();
    let two = cluster.database();
    eprintln!("two databases created in {:?}", started.elapsed());
    assert_ne!(one.name, two.name);
    assert_ne!(one.url, two.url);
    let prefix = format!("t_{}_", std::process::id());
    assert!(one.name.starts_with(&prefix), "{}", one.name);
    assert_eq!(
        one.url,
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            cluster.port(),
            one.name
        )
    );

    cluster.psql(
        &one.name,
        "CREATE TABLE only_here (x int); INSERT INTO only_here VALUES (7)",
    );
    assert_eq!(cluster.psql(&one.name, "SELECT x FROM only_here"), "7");
    assert_eq!(
        cluster.psql(
            &two.name,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'only_here'"
        ),
        "0"
    );
    // The URL works as is for a client.
    assert_eq!(
        ok(client(cluster, &one.url, None, "SELECT current_database()")),
        one.name
    );

    // A connection left open does not prevent the drop (WITH (FORCE)).
    let mut idle = Command::new(cluster.bin_dir().join("psql"))
        .args(["-X", "-d", &two.url, "-c", "SELECT pg_sleep(60)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn a lingering psql");
    let query = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}'",
        two.name
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.psql("postgres", &query) == "0" {
        assert!(
            Instant::now() < deadline,
            "the lingering session never connected"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let names = format!("'{}', '{}'", one.name, two.name);
    let count = format!("SELECT count(*) FROM pg_database WHERE datname IN ({names})");
    assert_eq!(cluster.psql("postgres", &count), "2");
    let started = Instant::now();
    drop(one);
    drop(two);
    eprintln!("two databases dropped in {:?}", started.elapsed());
    assert_eq!(cluster.psql("postgres", &count), "0");
    let status = idle.wait().expect("wait for the lingering psql");
    assert!(
        !status.success(),
        "the lingering session must have been terminated"
    );
}

#[test]
fn tls_cluster_verifies_and_requires_passwords() {
    let started = Instant::now();
    let cluster = PgCluster::start_tls();
    eprintln!("TLS cluster ready after {:?}", started.elapsed());
    let ca = cluster
        .ca_cert()
        .expect("a TLS cluster has a CA")
        .to_owned();
    assert!(ca.is_file());
    let port = cluster.port();
    cluster.create_login("alice", "s3cret 'quoted'");

    let tls = format!(
        "host=127.0.0.1 port={port} user=alice dbname=postgres sslmode=verify-full sslrootcert={}",
        ca.display()
    );
    let in_use = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    assert_eq!(
        ok(client(&cluster, &tls, Some("s3cret 'quoted'"), in_use)),
        "t"
    );
    // verify-full also accepts the DNS name in the certificate.
    let by_name = tls.replace("host=127.0.0.1", "host=localhost hostaddr=127.0.0.1");
    assert_eq!(
        ok(client(&cluster, &by_name, Some("s3cret 'quoted'"), in_use)),
        "t"
    );

    // Wrong password without TLS: refused by the scram `host` line.
    let plain = format!("host=127.0.0.1 port={port} user=alice dbname=postgres sslmode=disable");
    let refused = client(&cluster, &plain, Some("wrong"), "SELECT 1");
    assert!(
        !refused.status.success(),
        "a wrong password must be refused"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    // ... and also with TLS.
    let refused = client(&cluster, &tls, Some("wrong"), "SELECT 1");
    assert!(
        !refused.status.success(),
        "a wrong password must be refused over TLS"
    );
    // The right password without TLS is accepted, on a non-TLS connection.
    assert_eq!(
        ok(client(&cluster, &plain, Some("s3cret 'quoted'"), in_use)),
        "f"
    );
    // No password at all: refused too (no trust on TCP).
    assert!(!client(&cluster, &plain, None, "SELECT 1").status.success());

    // Test databases on a TLS cluster: the URL carries the superuser's password.
    let db = cluster.database();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        db.url,
        ca.display()
    );
    assert_eq!(ok(client(&cluster, &url, None, in_use)), "t");
    assert_eq!(
        ok(client(&cluster, &url, None, "SELECT current_database()")),
        db.name
    );
}

#[test]
fn restart_keeps_port_and_committed_data() {
    let cluster = PgCluster::start();
    let dir = cluster.dir().to_owned();
    let port = cluster.port();
    let db = cluster.database();
    cluster.psql(
        &db.name,
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)",
    );

    let started = Instant::now();
    cluster.restart();
    eprintln!("restart took {:?}", started.elapsed());
    assert_eq!(cluster.port(), port);
    assert_eq!(cluster.psql(&db.name, "SELECT sum(x) FROM t"), "3");
    assert_eq!(
        ok(client(&cluster, &db.url, None, "SELECT count(*) FROM t")),
        "2"
    );

    // Twice in a row works too.
    cluster.restart();
    assert_eq!(cluster.psql("postgres", "SELECT 1"), "1");

    // Dropping the cluster stops the server and removes its folder (the database guard
    // dropped afterwards must cope with that).
    let started = Instant::now();
    drop(cluster);
    eprintln!("cluster dropped in {:?}", started.elapsed());
    assert!(!dir.exists(), "{} must be removed", dir.display());
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
    drop(db);
}
