//! The stage over HTTP: uploads (raw and multipart, streamed, bounded), listings, downloads
//! with ranges, moves and deletes, `publish -file stage://...`, and paths that try to leave the
//! stage (refused with 400, nothing outside touched).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Harness, assert_error};
use serde_json::Value;

struct Up {
    status: u16,
    json: Value,
    text: String,
    headers: reqwest::header::HeaderMap,
}

async fn send(req: reqwest::RequestBuilder, token: &str) -> Up {
    let r = req.header("m1-auth-token", token).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    Up { status, json: serde_json::from_str(&text).unwrap_or(Value::Null), text, headers }
}

/// Every file under `dir` with its bytes (to prove nothing outside the stage changed).
fn snapshot(dir: &Path, skip: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.starts_with(skip) {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            snapshot(&p, skip, out);
        } else if e.file_type().unwrap().is_file() {
            out.insert(p.display().to_string(), std::fs::read(&p).unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_list_download_move_delete_and_publish_from_the_stage() {
    let h = Harness::start().await;
    let admin = h.init_admin().await;
    let url = |p: &str| h.url("test-m1", p);
    let csv = "name,n\nstaged1,1001\nstaged2,1002\n";
    // Raw body.
    let r = send(h.client.post(url("stage/put")).query(&[("path", "in/a.csv")]).body(csv), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((r.json["name"].as_str(), r.json["size"].as_u64()), (Some("a.csv"), Some(csv.len() as u64)));
    // Multipart, the seed's `file` field.
    let form = reqwest::multipart::Form::new()
        .text("note", "ignored")
        .part("file", reqwest::multipart::Part::bytes(b"{\"name\": \"j\", \"n\": 7}\n".to_vec()).file_name("b.jsonl"));
    let r = send(h.client.post(url("stage/put")).query(&[("path", "in/b.jsonl")]).multipart(form), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A folder.
    let r = send(h.client.post(url("stage/put")).query(&[("path", "empty/")]), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let r = send(h.client.get(url("stage/list")), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let top: Vec<&str> = r.json["content"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert_eq!(top, ["empty/", "in/"], "{}", r.text);
    let r = send(h.client.get(url("stage/list")).query(&[("path", "in/")]), &admin).await;
    let files = r.json["content"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{}", r.text);
    assert_eq!(files[0]["size"], csv.len());
    assert!(files[0]["last_modified"].as_str().unwrap().ends_with('Z'));

    // Download whole, and by range.
    let r = send(h.client.get(url("stage/get")).query(&[("path", "in/a.csv")]), &admin).await;
    assert_eq!((r.status, r.text.as_str()), (200, csv));
    let r =
        send(h.client.get(url("stage/get")).query(&[("path", "in/a.csv")]).header("Range", "bytes=7-13"), &admin).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.text, &csv[7..=13]);
    assert_eq!(r.headers["content-range"], format!("bytes 7-13/{}", csv.len()));
    let r =
        send(h.client.get(url("stage/get")).query(&[("path", "in/a.csv")]).header("Range", "bytes=-6"), &admin).await;
    assert_eq!((r.status, r.text.as_str()), (206, &csv[csv.len() - 6..]));
    let r =
        send(h.client.get(url("stage/get")).query(&[("path", "in/a.csv")]).header("Range", "bytes=900-"), &admin).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = send(h.client.get(url("stage/get")).query(&[("path", "in/a.csv"), ("metadata", "true")]), &admin).await;
    assert_eq!(r.json["size"], csv.len());

    // Publish from it.
    let r = send(h.client.post(url("publish")).form(&[("file", "stage://in/a.csv")]), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = send(h.client.post(url("get")).form(&[("ids", "[100, 101]")]), &admin).await;
    assert_eq!(r.json[0]["name"], "staged1", "{}", r.text);
    assert_eq!(r.json[1]["n"], 1002);

    // Move, then delete a file and a folder.
    let r =
        send(h.client.post(url("stage/move")).form(&[("path", "in/a.csv"), ("newPath", "done/a.csv")]), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_error(&to_resp(send(h.client.get(url("stage/get")).query(&[("path", "in/a.csv")]), &admin).await), 404);
    let r = send(h.client.post(url("stage/move")).form(&[("path", "in/"), ("newPath", "in/x/")]), &admin).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = send(h.client.post(url("stage/delete")).form(&[("path", "in")]), &admin).await;
    assert_eq!(r.status, 400, "a folder needs its slash: {}", r.text);
    let r = send(h.client.post(url("stage/delete")).form(&[("path", "in/")]), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = send(h.client.get(url("stage/list")), &admin).await;
    let top: Vec<&str> = r.json["content"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert_eq!(top, ["done/", "empty/"]);

    // A limit on uploads, and nothing left of one refused.
    let r = send(h.client.post(url("system")).form(&[("stage-max-bytes", "100")]), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = send(h.client.post(url("stage/put")).query(&[("path", "big.bin")]).body(vec![7u8; 1000]), &admin).await;
    assert_eq!(r.status, 413, "{}", r.text);
    let r = send(h.client.get(url("stage/list")), &admin).await;
    assert!(!r.text.contains("big.bin") && !r.text.contains("upload"), "{}", r.text);
    let stage_dir = h.home.path().join("envs/test-m1/stage");
    let leftovers: Vec<_> = std::fs::read_dir(&stage_dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");

    // Rights: a user with `get` may list and download but not change the stage.
    h.add_user(&admin, "reader", &["get"]).await;
    let reader = h.login("reader", common::PASSWORD).await;
    assert_eq!(send(h.client.get(url("stage/list")), &reader).await.status, 200);
    let r = send(h.client.post(url("stage/put")).query(&[("path", "x.csv")]).body("a"), &reader).await;
    assert_eq!(r.status, 403);
    // Over HTTP a `file` parameter cannot name a file of the server.
    let r = send(h.client.post(url("stage/put")).query(&[("path", "x.csv"), ("file", "/etc/passwd")]), &admin).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(!stage_dir.join("x.csv").exists());
}

fn to_resp(u: Up) -> common::Resp {
    common::Resp { status: u.status, text: u.text, json: u.json }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_paths_that_try_to_escape_are_refused_and_touch_nothing() {
    let h = Harness::start().await;
    let admin = h.init_admin().await;
    // Something outside the stage that a path could try to reach, and the whole tree before.
    std::fs::write(h.home.path().join("secret.txt"), "do not touch").unwrap();
    let stage_dir = h.home.path().join("envs/test-m1/stage");
    let r = send(h.client.post(h.url("test-m1", "stage/put")).query(&[("path", "ok.csv")]).body("a,b\n"), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut before = BTreeMap::new();
    snapshot(h.home.path(), &stage_dir, &mut before);
    let long = "x".repeat(300);
    let deep = "a/".repeat(600);
    let attacks = [
        "../secret.txt",
        "../../secret.txt",
        "a/../../secret.txt",
        "/etc/passwd",
        "..\\secret.txt",
        "a\0b",
        long.as_str(),
        deep.as_str(),
        "..",
        "./../x",
    ];
    for attack in attacks {
        for (method, path) in
            [("POST", "stage/put"), ("GET", "stage/get"), ("GET", "stage/list"), ("POST", "stage/delete")]
        {
            let url = h.url("test-m1", path);
            let req = match method {
                "GET" => h.client.get(&url).query(&[("path", attack)]),
                _ => {
                    h.client.post(&url).query(&[("path", attack)]).body(if path == "stage/put" { "pwned" } else { "" })
                }
            };
            let r = send(req, &admin).await;
            assert_eq!(r.status, 400, "{method} {path} {attack:?}: {}", r.text);
            assert!(r.json["message"].as_str().unwrap().contains("stage path"), "{}", r.text);
        }
        let r = send(
            h.client.post(h.url("test-m1", "stage/move")).form(&[("path", "ok.csv"), ("newPath", attack)]),
            &admin,
        )
        .await;
        assert_eq!(r.status, 400, "move to {attack:?}: {}", r.text);
        let r = send(h.client.post(h.url("test-m1", "publish")).form(&[("file", format!("stage://{attack}"))]), &admin)
            .await;
        assert_eq!(r.status, 400, "publish {attack:?}: {}", r.text);
    }
    // Percent-encoded climbs arrive decoded and are refused the same way.
    let r = send(h.client.get(format!("{}?path=%2e%2e%2fsecret.txt", h.url("test-m1", "stage/get"))), &admin).await;
    assert_eq!(r.status, 400, "{}", r.text);
    // A link planted inside the stage (not something the API can make) is not followed.
    #[cfg(unix)]
    std::os::unix::fs::symlink(h.home.path(), stage_dir.join("home")).unwrap();
    let r = send(h.client.get(h.url("test-m1", "stage/get")).query(&[("path", "home/secret.txt")]), &admin).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r =
        send(h.client.post(h.url("test-m1", "stage/put")).query(&[("path", "home/new.txt")]).body("x"), &admin).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let mut after = BTreeMap::new();
    snapshot(h.home.path(), &stage_dir, &mut after);
    // The server's own files may change (tokens); nothing else may appear or change.
    before.retain(|k, _| !k.ends_with("users.json"));
    after.retain(|k, _| !k.ends_with("users.json"));
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    assert_eq!(after[&h.home.path().join("secret.txt").display().to_string()], b"do not touch");
}
