//! The holes of issue 11 part 1, probed as a hostile caller would: nothing outside m1's own files
//! can be read or deleted over HTTP, signup is the operator's choice, and an environment's first
//! admin cannot be claimed by whoever finds it first.

mod common;

use std::path::Path;

use common::*;
use serde_json::json;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_is_off_unless_the_operator_turns_it_on() {
    let h = Harness::start_with(|o| o.signup = false).await;
    let r = h.ops("POST", "signup", None, &[("username", "mallory"), ("password", PASSWORD)]).await;
    assert_error(&r, 403);
    assert!(r.json["message"].as_str().unwrap().contains("-signup true"), "{r:?}");
    // The operator's owner of `default` sees the machine's environments.
    let owner = h.ops_owner("owner-user").await;
    let envs = h.ops("GET", "env/list", Some(&owner), &[]).await;
    assert_eq!(envs.json.as_array().unwrap().len(), 1, "{envs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signup_never_gets_the_default_account() {
    let h = Harness::start().await;
    // Even the very first signup: it used to become owner of `default` and could destroy every
    // environment made on the machine.
    let mallory = h.ops_signup("mallory").await;
    let accounts = h.ops("GET", "account/list", Some(&mallory), &[]).await;
    assert_ne!(accounts.json[0]["id"], "default", "{accounts:?}");
    assert_eq!(h.ops("GET", "env/list", Some(&mallory), &[]).await.json, json!([]));
    assert_error(&h.ops("POST", "env/destroy", Some(&mallory), &[("env", "test-m1")]).await, 403);
    assert_error(&h.ops("GET", "account/user/list", Some(&mallory), &[("account", "default")]).await, 403);
    // The operator's command makes the owner, once.
    h.ops_owner("owner-user").await;
    let home = h.home.path().to_path_buf();
    let again = tokio::task::spawn_blocking(move || m1_server::init_owner(&home, "other", PASSWORD)).await.unwrap();
    assert!(again.unwrap_err().to_string().contains("has an owner already"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_create_cannot_reach_foreign_directories_and_destroy_removes_only_m1_files() {
    let h = Harness::start().await;
    let mallory = h.ops_signup("mallory").await;
    let outside = h.home.path().parent().unwrap().join(format!("victim-{}", std::process::id()));
    write(&outside.join("precious.txt"), "keep me");
    // Outside the allowed locations ($M1_HOME/envs by default): refused.
    let url = outside.display().to_string();
    let r = h.ops("POST", "env/create", Some(&mallory), &[("env", "x"), ("url", &url)]).await;
    assert_error(&r, 403);
    assert!(r.json["message"].as_str().unwrap().contains("-allowLocation"), "{r:?}");
    // Inside the allowed root, but a directory with someone else's files: refused.
    let envs = h.home.path().join("envs");
    write(&envs.join("shared/notes.txt"), "not m1's");
    let shared = envs.join("shared").display().to_string();
    assert_error(&h.ops("POST", "env/create", Some(&mallory), &[("env", "x"), ("url", &shared)]).await, 400);
    // Inside another environment (its lake): refused.
    let lake = envs.join("test-m1/lake").display().to_string();
    let r = h.ops("POST", "env/create", Some(&mallory), &[("env", "x"), ("url", &lake)]).await;
    assert_error(&r, 400);
    assert!(r.json["message"].as_str().unwrap().contains("test-m1"), "{r:?}");
    let dotted = format!("{}/envs/other/../test-m1/lake", h.home.path().display());
    assert_error(&h.ops("POST", "env/create", Some(&mallory), &[("env", "x"), ("url", &dotted)]).await, 400);
    // A fresh directory works; destroy then removes m1's files and nothing else.
    let mine = envs.join("mine").display().to_string();
    let r = h.ops("POST", "env/create", Some(&mallory), &[("env", "mine"), ("url", &mine)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    write(&envs.join("mine/added-later.txt"), "someone's");
    std::os::unix::fs::symlink(&outside, envs.join("mine/archive")).unwrap();
    assert_eq!(h.ops("POST", "env/destroy", Some(&mallory), &[("env", "mine")]).await.status, 200);
    assert_eq!(std::fs::read_to_string(envs.join("mine/added-later.txt")).unwrap(), "someone's");
    assert!(!envs.join("mine/_delta_log").exists());
    assert_eq!(std::fs::read_to_string(outside.join("precious.txt")).unwrap(), "keep me", "a link is not followed");
    assert_eq!(std::fs::read_to_string(envs.join("shared/notes.txt")).unwrap(), "not m1's");
    // The other environment is untouched.
    let owner = h.ops_owner("owner-user").await;
    assert_eq!(h.ops("GET", "env/get", Some(&owner), &[("env", "test-m1")]).await.status, 200);
    std::fs::remove_dir_all(&outside).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reads_only_the_stage_and_allowed_directories() {
    let scratch = tempfile::tempdir().unwrap();
    let allowed = scratch.path().join("allowed");
    let secret = scratch.path().join("secret.jsonl");
    write(&allowed.join("rows.jsonl"), "{\"name\": \"ok\"}\n");
    write(&secret, "{\"name\": \"secret\"}\n");
    std::os::unix::fs::symlink(&secret, allowed.join("link.jsonl")).unwrap();
    let dir = allowed.clone();
    let h = Harness::start_with(move |o| o.allow_read = vec![dir]).await;
    assert!(!scratch.path().starts_with(h.home.path()));
    let admin = h.init_admin().await;
    let publish = |file: String| {
        let (h, admin) = (&h, admin.clone());
        async move { h.env("POST", "publish", Some(&admin), &[("file", &file)]).await }
    };
    for file in [
        "/etc/passwd".to_string(),
        "/dev/zero".to_string(),
        secret.display().to_string(),
        format!("{}/../secret.jsonl", allowed.display()),
        format!("{}/link.jsonl", allowed.display()),
        format!("file://{}", secret.display()),
        format!("{}/*.jsonl", scratch.path().display()),
        "/no/such/file.jsonl".to_string(),
    ] {
        let r = publish(file.clone()).await;
        assert_error(&r, 403);
        assert!(!r.text.contains("root:"), "{file}: {r:?}");
    }
    let r = publish(allowed.join("rows.jsonl").display().to_string()).await;
    assert_eq!((r.status, &r.json["rowsPublished"]), (200, &json!(1)), "{r:?}");
    // The environment's stage is always readable.
    let stage = h.home.path().join("envs/test-m1/stage/staged.jsonl");
    write(&stage, "{\"name\": \"staged\"}\n");
    let r = publish(stage.display().to_string()).await;
    assert_eq!((r.status, &r.json["rowsPublished"]), (200, &json!(1)), "{r:?}");
    // Without -allowRead nothing outside the stage.
    let h2 = Harness::start_with(|o| o.allow_read.clear()).await;
    let admin2 = h2.init_admin().await;
    let file = allowed.join("rows.jsonl").display().to_string();
    assert_error(&h2.env("POST", "publish", Some(&admin2), &[("file", &file)]).await, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_admin_of_an_environment_cannot_be_claimed_by_a_stranger() {
    let h = Harness::start().await;
    // Anonymous /health does not say whether an environment has users.
    let health = h.env("GET", "health", None, &[]).await;
    assert_eq!(health.status, 200);
    assert!(health.json["components"]["auth"].get("initialized").is_none(), "{health:?}");
    // An environment made on the machine: /init over HTTP is refused.
    let r = h.env("POST", "init", None, &[("username", "mallory"), ("password", PASSWORD)]).await;
    assert_error(&r, 403);
    assert!(r.json["message"].as_str().unwrap().contains("m1 init test-m1"), "{r:?}");
    let admin = h.init_admin().await;
    let health = h.env("GET", "health", Some(&admin), &[]).await;
    assert_eq!(health.json["components"]["auth"]["initialized"], true, "{health:?}");
    // One made through ops over HTTP: its creator's party calls /init, once (the seed flow).
    let owner = h.ops_owner("owner-user").await;
    let r = h.ops("POST", "env/create", Some(&owner), &[("env", "fresh")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let url = h.url("fresh", "init");
    let r = call(&h.client, "POST", &url, None, &[("username", "admin"), ("password", PASSWORD)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = call(&h.client, "POST", &url, None, &[("username", "mallory"), ("password", PASSWORD)]).await;
    assert!(r.status == 403 || r.status == 409, "{r:?}");
    // The users file holds password hashes: owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(h.home.path().join("envs/fresh/auth.json")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_parameters_get_400_not_500() {
    let h = Harness::start().await;
    let admin = h.init_admin().await;
    // Wildcards too large for the automaton.
    let many = format!("name:{}", "?".repeat(100));
    let long = format!("name:{}*", "x".repeat(990));
    for q in [many.as_str(), long.as_str()] {
        let r = h.env("POST", "query", Some(&admin), &[("q", q)]).await;
        assert_error(&r, 400);
        assert!(r.json["message"].as_str().unwrap().contains("too complex"), "{r:?}");
    }
    // System parameters that would lock every user out.
    for (name, value) in [("token-expire-ms", "-1"), ("token-expire-ms", "0"), ("password-min-length", "-3")] {
        let r = h.env("POST", "system", Some(&admin), &[(name, value)]).await;
        assert_error(&r, 400);
    }
    let again = h.login(ADMIN, PASSWORD).await;
    assert_eq!(h.env("GET", "next", Some(&again), &[]).await.json, json!(100), "still usable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_changes_made_on_the_machine_reach_the_running_server() {
    let h = Harness::start().await;
    h.init_admin().await;
    let home = h.home.path().to_path_buf();
    // As `m1 test-m1 system -token-expire-ms 5000` does, while the server runs.
    tokio::task::spawn_blocking(move || {
        let env = m1::Environment::open_in(&m1::Catalog::open(&home).unwrap(), "test-m1").unwrap();
        let change = std::collections::BTreeMap::from([("token-expire-ms".to_string(), json!(5000))]);
        env.engine().set_system(&change).unwrap();
    })
    .await
    .unwrap();
    let before = chrono_ms();
    let r = h.env("POST", "auth", None, &[("username", ADMIN), ("password", PASSWORD)]).await;
    let expires = r.json["expires"].as_i64().unwrap();
    assert!(expires - before <= 5000 + 2000, "the token lives {} ms", expires - before);
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_stops_when_its_client_hangs_up() {
    let data = tempfile::tempdir().unwrap();
    let big = data.path().join("big.jsonl");
    let line = "{\"name\": \"a name long enough to take some time to publish\", \"n\": 1}\n";
    std::fs::write(&big, line.repeat(2_000_000)).unwrap();
    std::fs::write(data.path().join("small.jsonl"), "{\"name\": \"small\"}\n").unwrap();
    let dir = data.path().to_path_buf();
    let h = Harness::start_with(move |o| {
        o.allow_read = vec![dir];
        o.max_publishes = 1;
    })
    .await;
    let admin = h.init_admin().await;
    let impatient = reqwest::Client::builder().timeout(std::time::Duration::from_millis(300)).build().unwrap();
    let file = big.display().to_string();
    let r = impatient
        .post(h.url("test-m1", "publish"))
        .header("m1-auth-token", &admin)
        .form(&[("file", file.as_str())])
        .send()
        .await;
    assert!(r.is_err(), "the client gave up: {r:?}");
    // One publish at a time: the small one gets the slot only once the big one has stopped.
    let small = data.path().join("small.jsonl").display().to_string();
    let started = std::time::Instant::now();
    loop {
        let r = h.env("POST", "publish", Some(&admin), &[("file", &small)]).await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "{r:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "the big publish never stopped");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Nothing of the big file was committed...
    assert_eq!(h.env("GET", "next", Some(&admin), &[]).await.json, json!(101));
    // ... though it publishes when its client waits (so it was stopped, not refused).
    let r = h.env("POST", "publish", Some(&admin), &[("file", &file), ("rows", "1000")]).await;
    assert_eq!((r.status, &r.json["rowsPublished"]), (200, &json!(1000)), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_environment_keep_each_others_users_and_tokens() {
    let h = Harness::start().await;
    let admin = h.init_admin().await;
    let options = m1_server::ServeOptions {
        port: 0,
        home: Some(h.home.path().to_path_buf()),
        allow_read: vec![std::env::temp_dir()],
        ..Default::default()
    };
    let second = m1_server::start(options).await.unwrap();
    let on_second = |path: &str| format!("http://{}/test-m1/{path}", second.addr);
    // A user added on each server.
    h.add_user(&admin, "alice", &["get"]).await;
    let admin2 =
        call(&h.client, "POST", &on_second("auth"), None, &[("username", ADMIN), ("password", PASSWORD)]).await;
    let admin2 = admin2.json["token"].as_str().unwrap().to_string();
    let params = [("username", "bob"), ("password", PASSWORD), ("rights", "get")];
    assert_eq!(call(&h.client, "POST", &on_second("user/add"), Some(&admin2), &params).await.status, 200);
    let users = h.env("GET", "user/list", Some(&admin), &[]).await;
    let names: Vec<&str> = users.json.as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert!(names.contains(&"alice") && names.contains(&"bob"), "{names:?}");
    // A token from one server works on the other.
    assert_eq!(call(&h.client, "GET", &on_second("next"), Some(&admin), &[]).await.json, json!(100));
    assert_eq!(h.env("GET", "next", Some(&admin2), &[]).await.json, json!(100));
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_passwords_backs_off() {
    let h = Harness::start().await;
    h.init_admin().await;
    for _ in 0..5 {
        let r = h.env("POST", "auth", None, &[("username", ADMIN), ("password", "not-the-password")]).await;
        assert_error(&r, 401);
    }
    // The sixth attempt is refused before the password is looked at, even the right one.
    let url = h.url("test-m1", "auth");
    let r = h.client.post(&url).form(&[("username", ADMIN), ("password", PASSWORD)]).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&wait), "{wait}");
    // Ops logins too (the address's back-off, 1 s so far, applies to them as well).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    h.ops_owner("owner-user").await;
    for _ in 0..5 {
        let r = h.ops("POST", "auth", None, &[("username", "owner-user"), ("password", "nope-nope")]).await;
        assert!(r.status == 401 || r.status == 429, "{r:?}");
    }
    let r = h.ops("POST", "auth", None, &[("username", "owner-user"), ("password", PASSWORD)]).await;
    assert_error(&r, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_are_copied_and_restored_only_within_allowed_locations() {
    let h = Harness::start().await;
    let admin = h.init_admin().await;
    let b = h.env("POST", "backup/create", Some(&admin), &[("name", "b1")]).await;
    assert_eq!(b.status, 200, "{b:?}");
    assert_eq!(b.json["status"], "complete");
    let outside = h.home.path().parent().unwrap().join(format!("loot-{}", std::process::id()));
    for to in [outside.display().to_string(), format!("{}/backups/../envs/test-m1/lake", h.home.path().display())] {
        let r = h.env("POST", "backup/copy", Some(&admin), &[("id", "b1"), ("to", &to)]).await;
        assert_error(&r, 403);
        assert!(r.json["message"].as_str().unwrap().contains("-allowLocation"), "{r:?}");
    }
    assert!(!outside.exists(), "nothing was written outside");
    // Inside $M1_HOME/backups: a deep copy.
    let inside = h.home.path().join("backups/b1").display().to_string();
    let r = h.env("POST", "backup/copy", Some(&admin), &[("id", "b1"), ("to", &inside)]).await;
    assert_eq!((r.status, r.json["deep"].as_bool()), (200, Some(true)), "{r:?}");
    // A user without admin may not back up, copy or restore.
    h.add_user(&admin, "reader", &["get"]).await;
    let reader = h.login("reader", PASSWORD).await;
    for (path, params) in [
        ("backup/create", vec![]),
        ("backup/copy", vec![("id", "b1"), ("to", inside.as_str())]),
        ("restore", vec![("backup", "b1")]),
    ] {
        assert_error(&h.env("POST", path, Some(&reader), &params).await, 403);
    }
    // Ops: a restore reads deep copies only from allowed locations, and needs admin on the source.
    let owner = h.ops_owner("owner-user").await;
    let foreign = outside.display().to_string();
    let r = h.ops("POST", "env/restore", Some(&owner), &[("env", "r1"), ("location", &foreign)]).await;
    assert_error(&r, 403);
    let mallory = h.ops_signup("mallory").await;
    let r = h.ops("POST", "env/restore", Some(&mallory), &[("env", "r2"), ("from", "test-m1"), ("backup", "b1")]).await;
    assert_error(&r, 403);
    let r = h.ops("POST", "env/restore", Some(&owner), &[("env", "r3"), ("location", &inside)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json["restoredFrom"]["name"], "b1");
}
