//! The rights matrix: every endpoint of the library's endpoint table, called with no token, an expired
//! token, a token used from another address, and by users holding each single right. Public
//! endpoints must not ask for a token; the others answer 401 for the bad tokens, 403 for users
//! without a listed right, and success for users with one.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use m1::endpoint::{Access, ENV_RIGHTS, OPS_RIGHTS, Scope};

/// Endpoints routed and rights-checked whose components are not in this build yet (501).
fn pending(_path: &str) -> bool {
    false
}

fn expected_ok(path: &str) -> u16 {
    match path {
        // Public, but this environment was made on the machine: its first admin comes from the
        // operator, never over HTTP.
        "init" => 403,
        // DR is not set up here (tests/dr.rs and serve.rs set it up and fail over): a caller
        // with the right gets past the rights check to the clear error that says so.
        "dr/setup" | "dr/status" | "dr/failover" | "dr/failback" | "dr/startPreProvision" => 400,
        "env/dr/status" | "env/dr/failover" | "env/dr/failback" => 400,
        p if pending(p) => 501,
        _ => 200,
    }
}

/// Parameters that make a permitted call succeed; `n` keeps names unique.
fn env_sample(path: &str, n: usize, admin_token: &str, file: &str) -> Vec<(String, String)> {
    let v: Vec<(&str, String)> = match path {
        "init" | "auth" => vec![("username", ADMIN.into()), ("password", PASSWORD.into())],
        "user/password" => vec![("password", PASSWORD.into())],
        "user/get" => vec![("username", ADMIN.into())],
        "user/add" => vec![("username", format!("new-{n}")), ("password", PASSWORD.into()), ("rights", "get".into())],
        "user/update" => vec![("username", format!("victim-{n}")), ("rights", r#"["get"]"#.into())],
        "user/remove" => vec![("username", format!("victim-{n}"))],
        "token/data" => vec![("token", admin_token.into())],
        "schema/add" => vec![("properties", format!(r#"[{{"name": "p{n}", "type": "string"}}]"#))],
        "write" => vec![("items", r#"[{"a": 1}]"#.into())],
        "publish" => vec![("file", file.into())],
        "get" => vec![("ids", "[1, 2]".into())],
        "range" => vec![("start", "0".into()), ("end", "5".into())],
        "vacuum" => vec![("olderThanMs", "3600000".into())],
        "query" => vec![("store", "index".into()), ("q", "*".into()), ("rows", "2".into())],
        "store/create" => vec![("store", format!("created{n}"))],
        "store/rename" => vec![("store", format!("made{n}")), ("name", format!("renamed{n}"))],
        "store/destroy" => vec![("store", format!("made{n}"))],
        "store/enable" | "store/autocommit" => vec![("store", "index".into()), ("enable", "true".into())],
        "store/rebuild" | "store/commit" => vec![("store", "index".into())],
        "session/update" => {
            vec![("store", "stash".into()), ("ops", r#"[{"upsert": [{"session": {"id": "a"}}]}]"#.into())]
        }
        "session/query" => vec![("store", "stash".into()), ("q", "*".into())],
        "session/get" => vec![("store", "stash".into()), ("ids", r#"["a"]"#.into())],
        "session/key" => vec![("store", "stash".into()), ("key", "session.id".into())],
        "session/add" => vec![("store", format!("s{n}")), ("shards", "1".into()), ("replicas", "1".into())],
        "session/rename" => vec![("store", format!("made{n}")), ("name", format!("renamed{n}"))],
        "session/drop" => vec![("store", format!("made{n}"))],
        "backup/get" | "restore" => vec![(if path == "restore" { "backup" } else { "id" }, "fixture".into())],
        "backup/delete" => vec![("id", format!("made{n}"))],
        "backup/copy" => vec![("id", "fixture".into()), ("to", format!("{}/backups/copy{n}", home(file)))],
        // A file, not a directory (in a location the server allows): refused after the rights check.
        "dr/setup" => vec![("replica", format!("{}/backups/a-file", home(file)))],
        "stage/put" | "stage/get" | "stage/delete" => vec![("path", format!("in/f{n}.csv"))],
        "stage/move" => vec![("path", format!("in/f{n}.csv")), ("newPath", format!("out/f{n}.csv"))],
        _ => vec![],
    };
    v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// `$M1_HOME` (where the sample file is), whose `backups/` the server may copy backups to.
fn home(file: &str) -> String {
    std::path::Path::new(file).parent().unwrap().to_str().unwrap().to_string()
}

fn refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn route_path(path: &str) -> String {
    path.replace("{name}", "password-min-length")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_rights_matrix() {
    let h = Harness::start().await;
    let mut admin = h.init_admin().await;
    let file = h.home.path().join("rows.jsonl");
    std::fs::write(&file, "{\"name\": \"x\", \"n\": 1}\n").unwrap();
    let file = file.to_str().unwrap().to_string();
    let mut rights: Vec<&str> = ENV_RIGHTS.to_vec();
    rights.push("appRight");
    for r in &rights {
        h.add_user(&admin, &format!("u-{r}"), &[r]).await;
    }
    let mut tokens: BTreeMap<&str, String> = BTreeMap::new();
    for r in &rights {
        tokens.insert(r, h.login(&format!("u-{r}"), PASSWORD).await);
    }
    let r = h.env("POST", "session/add", Some(&admin), &[("store", "stash"), ("shards", "1"), ("replicas", "1")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = h.env("POST", "backup/create", Some(&admin), &[("name", "fixture")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    std::fs::create_dir_all(h.home.path().join("backups")).unwrap();
    std::fs::write(h.home.path().join("backups/a-file"), "not a directory").unwrap();
    let mut checked = 0;
    for (n, route) in m1::endpoint::of(Scope::Env).enumerate() {
        let method = route.verbs.names()[0];
        let path = route_path(route.path);
        let params = env_sample(route.path, n, &admin, &file);
        let params = refs(&params);
        if route.access == Access::Public {
            let r = h.env(method, &path, None, &params).await;
            assert_eq!(r.status, expected_ok(route.path), "public /{path}: {r:?}");
            checked += 1;
            continue;
        }
        assert_error(&h.env(method, &path, None, &params).await, 401);
        let r = h.env("POST", "auth", None, &[("username", ADMIN), ("password", PASSWORD), ("ttl", "1")]).await;
        let expired = r.json["token"].as_str().unwrap().to_string();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_error(&h.env(method, &path, Some(&expired), &params).await, 401);
        let other = call(&h.other_ip, method, &h.url("test-m1", &path), Some(&admin), &params).await;
        assert_error(&other, 401);
        checked += 3;
        for right in &rights {
            let allowed = match route.access {
                Access::Token => true,
                Access::AnyOf(needed) => needed.contains(right),
                other => panic!("environment route /{path} with ops access {other:?}"),
            };
            if allowed && matches!(route.path, "user/update" | "user/remove") {
                h.add_user(&admin, &format!("victim-{n}"), &["get"]).await;
            }
            if allowed && matches!(route.path, "session/rename" | "session/drop") {
                let store = format!("made{n}");
                let params = [("store", store.as_str()), ("shards", "1"), ("replicas", "1")];
                let r = h.env("POST", "session/add", Some(&admin), &params).await;
                assert_eq!(r.status, 200, "{r:?}");
            }
            if allowed && route.path == "backup/delete" {
                let r = h.env("POST", "backup/create", Some(&admin), &[("name", &format!("made{n}"))]).await;
                assert_eq!(r.status, 200, "{r:?}");
            }
            if allowed && matches!(route.path, "store/rename" | "store/destroy") {
                let r = h.env("POST", "store/create", Some(&admin), &[("store", &format!("made{n}"))]).await;
                assert_eq!(r.status, 200, "{r:?}");
            }
            if allowed && matches!(route.path, "stage/get" | "stage/move" | "stage/delete") {
                let f = format!("in/f{n}.csv");
                let _ = h.env("POST", "stage/delete", Some(&admin), &[("path", &format!("out/f{n}.csv"))]).await;
                let r = h.upload("stage/put", Some(&admin), &[("path", &f)], "a,b\n").await;
                assert_eq!(r.status, 200, "{r:?}");
            }
            let r = if route.takes_body {
                h.upload(&path, Some(&tokens[right]), &params, "a,b\n").await
            } else {
                h.env(method, &path, Some(&tokens[right]), &params).await
            };
            if allowed {
                assert_eq!(r.status, expected_ok(route.path), "/{path} as u-{right}: {r:?}");
                if r.status == 200 {
                    assert_eq!(r.text.is_empty(), !route.has_body(), "/{path}: body or none as the seed says: {r:?}");
                }
            } else {
                assert_error(&r, 403);
            }
            checked += 1;
            if allowed && route.path == "token/delete" {
                admin = h.login(ADMIN, PASSWORD).await;
                for r in &rights {
                    tokens.insert(r, h.login(&format!("u-{r}"), PASSWORD).await);
                }
            }
        }
    }
    assert!(checked > 200, "{checked} checks");
}

fn ops_sample(path: &str, n: usize) -> Vec<(String, String)> {
    let env = ("env", "test-m1".to_string());
    let v: Vec<(&str, String)> = match path {
        "signup" => vec![("username", format!("signup-{n}")), ("password", PASSWORD.into())],
        "auth" => vec![("username", "owner-user".into()), ("password", PASSWORD.into())],
        "user/password" => vec![("password", PASSWORD.into())],
        "account/user/list" => vec![("account", "default".into())],
        "account/firewall" => vec![("account", "default".into())],
        "usage" => vec![env],
        "account/user/add" | "account/user/update" => {
            vec![("account", "default".into()), ("username", format!("x-{n}")), ("rights", r#"["view"]"#.into())]
        }
        "account/user/remove" => vec![("account", "default".into()), ("username", format!("x-{n}"))],
        "env/list" => vec![("account", "default".into())],
        "env/create" => vec![("account", "default".into()), ("env", format!("created-{n}"))],
        "env/rename" => vec![("env", format!("scratch-{n}")), ("name", format!("renamed-{n}"))],
        "env/destroy" => vec![("env", format!("scratch-{n}"))],
        "env/rescale" => vec![env, ("servers", "2".into())],
        "env/reboot" => vec![env, ("group", "index".into())],
        "env/bucket/register" | "env/bucket/deregister" => vec![env, ("bucket", format!("bucket-{n}"))],
        "env/bucket/grant" | "env/bucket/revoke" => vec![env, ("arn", "arn:aws:iam::1:role/r".into())],
        "env/outbound" => vec![env, ("enable", "true".into())],
        "env/settings" => vec![env, ("settings", r#"{"tier": "production"}"#.into())],
        "env/store/create" => vec![env, ("store", format!("ops{n}")), ("type", "boost".into())],
        "env/store/rename" => vec![env, ("store", format!("ops{n}")), ("name", format!("opsb{n}"))],
        "env/store/destroy" => vec![env, ("store", format!("ops{n}"))],
        "env/session/create" => vec![env, ("store", format!("ops{n}")), ("shards", "1".into())],
        "env/session/rename" => vec![env, ("store", format!("ops{n}")), ("name", format!("opsb{n}"))],
        "env/session/destroy" => vec![env, ("store", format!("ops{n}"))],
        "env/restore" => {
            vec![("env", format!("restored-{n}")), ("from", "test-m1".into()), ("backup", "fixture".into())]
        }
        p if p.starts_with("env/") => vec![env],
        _ => vec![],
    };
    v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_rights_matrix() {
    let h = Harness::start().await;
    let owner = h.ops_owner("owner-user").await;
    let mut rights: Vec<&str> = OPS_RIGHTS.to_vec();
    rights.push("appRight");
    let mut tokens: BTreeMap<&str, String> = BTreeMap::new();
    for r in &rights {
        let user = format!("o-{r}");
        h.ops_signup(&user).await;
        let rs = format!(r#"["{r}"]"#);
        let add = h
            .ops(
                "POST",
                "account/user/add",
                Some(&owner),
                &[("account", "default"), ("username", &user), ("rights", &rs)],
            )
            .await;
        assert_eq!(add.status, 200, "{add:?}");
        let r2 = h.ops("POST", "auth", None, &[("username", &user), ("password", PASSWORD)]).await;
        tokens.insert(r, r2.json["token"].as_str().unwrap().to_string());
    }
    let home = h.home.path().to_path_buf();
    let r = h.ops("POST", "env/backup/create", Some(&owner), &[("env", "test-m1"), ("name", "fixture")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let mut checked = 0;
    for (n, route) in m1::endpoint::of(Scope::Ops).enumerate() {
        let method = route.verbs.names()[0];
        let path = route.path;
        let params = ops_sample(path, n);
        let params = refs(&params);
        if route.access == Access::Public {
            let r = h.ops(method, path, None, &params).await;
            assert_eq!(r.status, 200, "public /{path}: {r:?}");
            checked += 1;
            continue;
        }
        assert_error(&h.ops(method, path, None, &params).await, 401);
        let r = h.ops("POST", "auth", None, &[("username", "owner-user"), ("password", PASSWORD), ("ttl", "1")]).await;
        let expired = r.json["token"].as_str().unwrap().to_string();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_error(&h.ops(method, path, Some(&expired), &params).await, 401);
        assert_error(&call(&h.other_ip, method, &h.url("ops", path), Some(&owner), &params).await, 401);
        checked += 3;
        for right in &rights {
            let allowed = match route.access {
                Access::Token => true,
                Access::Account(needed) => needed == *right,
                other => panic!("ops route /{path} with environment access {other:?}"),
            };
            if allowed {
                // Fresh objects for calls that consume them.
                if path.starts_with("account/user/") {
                    let x = format!("x-{n}");
                    let _ = h.ops("POST", "signup", None, &[("username", &x), ("password", PASSWORD)]).await;
                    if path != "account/user/add" {
                        h.ops("POST", "account/user/add", Some(&owner), &[("account", "default"), ("username", &x)])
                            .await;
                    }
                }
                if matches!(path, "env/rename" | "env/destroy") {
                    let home = home.clone();
                    tokio::task::spawn_blocking(move || {
                        let cat = m1_engine::Catalog::open(&home).unwrap();
                        cat.create(&format!("scratch-{n}"), None, m1_engine::EnvConfig::default()).unwrap();
                    })
                    .await
                    .unwrap();
                }
                if path == "env/bucket/deregister" {
                    let b = format!("bucket-{n}");
                    h.ops("POST", "env/bucket/register", Some(&owner), &[("env", "test-m1"), ("bucket", &b)]).await;
                }
                if matches!(path, "env/session/rename" | "env/session/destroy") {
                    let s = format!("ops{n}");
                    let r =
                        h.ops("POST", "env/session/create", Some(&owner), &[("env", "test-m1"), ("store", &s)]).await;
                    assert_eq!(r.status, 200, "{r:?}");
                }
                if matches!(path, "env/store/rename" | "env/store/destroy") {
                    let s = format!("ops{n}");
                    let r = h.ops("POST", "env/store/create", Some(&owner), &[("env", "test-m1"), ("store", &s)]).await;
                    assert_eq!(r.status, 200, "{r:?}");
                }
                if path == "env/create" {
                    let _ = h.ops("POST", "env/destroy", Some(&owner), &[("env", &format!("created-{n}"))]).await;
                }
            }
            let r = h.ops(method, path, Some(&tokens[right]), &params).await;
            if allowed {
                assert_eq!(r.status, expected_ok(path), "/{path} as o-{right}: {r:?}");
                if r.status == 200 {
                    assert_eq!(r.text.is_empty(), !route.has_body(), "/{path}: body or none as the seed says: {r:?}");
                }
            } else {
                assert_error(&r, 403);
            }
            checked += 1;
            if allowed && path == "token/delete" {
                let user = format!("o-{right}");
                let r2 = h.ops("POST", "auth", None, &[("username", &user), ("password", PASSWORD)]).await;
                tokens.insert(right, r2.json["token"].as_str().unwrap().to_string());
            }
        }
    }
    assert!(checked > 150, "{checked} checks");
}
