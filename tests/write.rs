//! `/write`: items archived whole with ip and received stamps, optionally published, and
//! re-publishable from the archive.

use m1::{EnvConfig, Environment, Property, PropertyType, PublishRequest, WriteOptions};
use serde_json::{Value, json};

fn env(dir: &tempfile::TempDir) -> Environment {
    let env = Environment::create_with(dir.path().to_str().unwrap(), EnvConfig::default()).unwrap();
    env.add_properties(&[
        Property::new("event.id", PropertyType::String),
        Property::new("event.time", PropertyType::Date),
        Property::new("_m1.ip", PropertyType::String),
        Property::new("_m1.receivedUTC", PropertyType::Date),
    ])
    .unwrap();
    env
}

fn read_archive(dir: &tempfile::TempDir, file: &str) -> Vec<Value> {
    let bytes = std::fs::read(dir.path().join(file)).unwrap();
    let text = String::from_utf8(zstd::decode_all(&bytes[..]).unwrap()).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn write_archives_stamps_and_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(&dir);
    let items = vec![
        json!({"property1": {"ip": "127.0.0.1"}, "session": null, "event": {"id": "key98765", "time": 946702800, "type": "sessionStart"}}),
        json!({"event": {"id": "second"}, "extra": [1, 2, 3]}),
    ];
    let before = chrono::Utc::now().timestamp_millis();
    let options = WriteOptions { ip: Some("10.1.2.3".into()), ..WriteOptions::default() };
    let report = env.write(items.clone(), &options).unwrap();
    assert_eq!((report.archived, report.published.is_none(), report.keys.is_none()), (2, true, true));
    assert!(report.file.starts_with("archive/") && report.file.ends_with(".jsonl.zst"), "{}", report.file);
    assert_eq!(env.next_key().unwrap(), 0, "without publish nothing reaches the lake");

    // The archive keeps every item whole, plus the stamps.
    let archived = read_archive(&dir, &report.file);
    assert_eq!(archived.len(), 2);
    for (a, item) in archived.iter().zip(&items) {
        assert_eq!(a["_m1"]["ip"], "10.1.2.3");
        let received = m1_engine::values::parse_date(a["_m1"]["receivedUTC"].as_str().unwrap()).unwrap();
        assert!(received >= before - 1 && received <= chrono::Utc::now().timestamp_millis());
        let mut original = a.clone();
        original.as_object_mut().unwrap().shift_remove("_m1");
        assert_eq!(&original, item);
    }

    // publish=true also types them into the lake and returns their keys.
    let options = WriteOptions { publish: true, ..WriteOptions::default() };
    let report = env.write(items, &options).unwrap();
    assert_eq!(report.keys, Some(vec![0, 1]));
    let got = env.get_json(&[0, 1], None).unwrap();
    assert_eq!(got[0]["event.id"], "key98765");
    assert_eq!(got[0]["event.time"], "2000-01-01T05:00:00.000Z");
    assert!(got[0].get("_m1.ip").is_none(), "no ip for local calls");
    assert!(got[1]["_m1.receivedUTC"].as_str().is_some());

    // The archive can be published again.
    let again = env.publish(&PublishRequest::new(dir.path().join("archive").display().to_string())).unwrap();
    assert_eq!((again.files, again.rows_published), (2, 4));
    let ids: Vec<Value> = env
        .range(2, 6, None)
        .unwrap()
        .flat_map(|b| m1::encode::records(&b.unwrap()))
        .map(|r| r["event.id"].clone())
        .collect();
    assert_eq!(ids.len(), 4);
}

#[test]
fn write_with_rules_and_bad_items() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(&dir);
    let rules = r#"[{"op":"filter","q":"event.id:keep*"},{"op":"rename","from":"t","to":"event.time"}]"#;
    let options = WriteOptions { publish: true, rules: Some(rules.into()), ..WriteOptions::default() };
    let items =
        vec![json!({"event": {"id": "keep1"}, "t": "2021-02-23T19:18:04.399Z"}), json!({"event": {"id": "drop"}})];
    let report = env.write(items, &options).unwrap();
    assert_eq!(report.keys, Some(vec![0]));
    assert_eq!(report.published.as_ref().unwrap().rows_filtered, 1);
    assert_eq!(env.get_json(&[0], None).unwrap()[0]["event.time"], "2021-02-23T19:18:04.399Z");

    let err = env.write(vec![json!([1])], &WriteOptions::default()).unwrap_err().to_string();
    assert!(err.contains("items[0] is not a JSON object"), "{err}");
    let strict = WriteOptions { publish: true, ..WriteOptions::default() };
    let err = env.write(vec![json!({"event": {"time": "never"}})], &strict).unwrap_err().to_string();
    assert!(err.contains("property 'event.time': value \"never\" is not a valid date"), "{err}");
    assert_eq!(env.range(0, 100, None).unwrap().map(|b| b.unwrap().num_rows()).sum::<usize>(), 1);
}
