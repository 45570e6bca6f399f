use std::path::PathBuf;

use super::*;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/comfyui")
}

fn schemas() -> BTreeMap<String, NodeSchema> {
    let file = std::fs::File::open(fixtures().join("object_info_full.json.gz")).unwrap();
    let info: Value = serde_json::from_reader(flate2::read::GzDecoder::new(file)).unwrap();
    NodeSchema::parse_all(info.as_object().unwrap())
}

fn read(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every pair ComfyUI's frontend made (`NAME.ui.json` saved, `NAME.api.json` what it sent).
fn pairs() -> Vec<(String, Value, Value)> {
    let dir = fixtures().join("ui-api-pairs");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".ui.json").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let ui = read(&dir.join(format!("{name}.ui.json")));
            let api = read(&dir.join(format!("{name}.api.json")));
            (name, ui, api)
        })
        .collect()
}

/// `node` as far as ComfyUI reads it. The frontend also sends its extensions' own widgets
/// (PreviewAny's `preview`, the audio player's `audioUI`, the 3D viewer's `image`), always as
/// `""`: ComfyUI ignores inputs a class does not declare, and the conversion does not make
/// them. A class without a display name in `/object_info` is titled by the frontend's own
/// English names, which ComfyUI does not serve; the conversion titles it by its class.
fn as_comfyui_reads(node: &Value, schemas: &BTreeMap<String, NodeSchema>) -> Value {
    let mut node = node.clone();
    let class = node["class_type"].as_str().unwrap_or_default().to_owned();
    let schema = &schemas[&class];
    if let Some(inputs) = node["inputs"].as_object_mut() {
        inputs.retain(|name, value| schema.input(name).is_some() || value != "");
    }
    if schema.display_name == class {
        node["_meta"]["title"] = Value::Null;
    }
    node
}

/// Where two API workflows differ, node by node.
fn differences(
    got: &Map<String, Value>,
    want: &Map<String, Value>,
    schemas: &BTreeMap<String, NodeSchema>,
) -> Vec<String> {
    let mut found = Vec::new();
    for (id, node) in want {
        let node = &as_comfyui_reads(node, schemas);
        match got
            .get(id)
            .map(|made| as_comfyui_reads(made, schemas))
            .as_ref()
        {
            None => found.push(format!("node {id} ({}) missing", node["class_type"])),
            Some(made) if made != node => found.push(format!("node {id}: got {made}, want {node}")),
            Some(_) => {}
        }
    }
    for id in got.keys().filter(|id| !want.contains_key(*id)) {
        found.push(format!("node {id} ({}) extra", got[id]["class_type"]));
    }
    found
}

#[test]
fn every_editor_workflow_converts_to_exactly_what_comfyuis_frontend_sent() {
    let schemas = schemas();
    let pairs = pairs();
    assert_eq!(pairs.len(), 26, "every recorded pair is read");
    let mut failures = Vec::new();
    for (name, ui, api) in &pairs {
        assert!(is_editor_format(ui), "{name}");
        match to_api(ui, &schemas) {
            Ok(got) => {
                let found = differences(&got, api.as_object().unwrap(), &schemas);
                if !found.is_empty() {
                    failures.push(format!("{name}:\n  {}", found.join("\n  ")));
                }
            }
            Err(error) => failures.push(format!("{name}: {error}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn default_ui() -> Value {
    read(&fixtures().join("ui-api-pairs/frontend_default.ui.json"))
}

#[test]
fn classes_this_comfyui_lacks_are_named_each_once() {
    let mut ui = default_ui();
    for node in ui["nodes"].as_array_mut().unwrap() {
        if node["type"] == "CLIPTextEncode" {
            node["type"] = json!("CLIPTextEncodeSDXLPlus");
        }
        if node["type"] == "SaveImage" {
            node["type"] = json!("ImageSaverPro");
        }
    }
    let error = to_api(&ui, &schemas()).unwrap_err();
    assert_eq!(
        error,
        ConvertError::MissingNodes {
            classes: vec!["CLIPTextEncodeSDXLPlus".into(), "ImageSaverPro".into()]
        }
    );
    assert!(
        error
            .to_string()
            .contains("CLIPTextEncodeSDXLPlus, ImageSaverPro")
    );
}

#[test]
fn a_missing_class_that_is_muted_or_bypassed_does_not_matter() {
    let mut ui = default_ui();
    ui["nodes"].as_array_mut().unwrap().push(json!({
        "id": 99, "type": "NoSuchNode", "mode": BYPASSED, "inputs": [], "widgets_values": []
    }));
    assert!(to_api(&ui, &schemas()).is_ok());
}

#[test]
fn a_workflow_where_nothing_runs_is_refused_as_such() {
    let mut ui = default_ui();
    for node in ui["nodes"].as_array_mut().unwrap() {
        node["mode"] = json!(MUTED);
    }
    assert_eq!(to_api(&ui, &schemas()), Err(ConvertError::Empty));
}

#[test]
fn reroutes_in_a_circle_and_a_subgraph_inside_itself_end_with_a_message() {
    let schemas = schemas();
    let circle = json!({
        "nodes": [
            {"id": 1, "type": "Reroute", "inputs": [{"name": "", "type": "*", "link": 2}]},
            {"id": 2, "type": "Reroute", "inputs": [{"name": "", "type": "*", "link": 1}]},
            {"id": 3, "type": "PreviewImage", "inputs": [{"name": "images", "type": "IMAGE", "link": 3}]}
        ],
        "links": [[1, 1, 0, 2, 0, "*"], [2, 2, 0, 1, 0, "*"], [3, 1, 0, 3, 0, "IMAGE"]]
    });
    assert!(matches!(
        to_api(&circle, &schemas),
        Err(ConvertError::Malformed(_))
    ));
    let inside_itself = json!({
        "nodes": [{"id": 1, "type": "loop", "inputs": []}],
        "links": [],
        "definitions": {"subgraphs": [{
            "id": "loop", "nodes": [{"id": 1, "type": "loop", "inputs": []}], "links": []
        }]}
    });
    assert!(matches!(
        to_api(&inside_itself, &schemas),
        Err(ConvertError::Malformed(_))
    ));
}

#[test]
fn only_the_editor_format_is_taken_for_it() {
    assert!(is_editor_format(&default_ui()));
    let api = read(&fixtures().join("ui-api-pairs/frontend_default.api.json"));
    assert!(!is_editor_format(&api));
    assert!(!is_editor_format(&json!({"nodes": "x", "links": []})));
}

#[cfg(not(target_arch = "wasm32"))]
proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Any wiring of reroutes, primitives, muted and bypassed nodes, subgraph instances
    /// (one of them inside itself) and real nodes, links pointing anywhere (cycles
    /// included), converts or is refused with a message: it never panics or loops.
    #[test]
    fn any_wiring_converts_or_is_refused_and_never_hangs(
        nodes in proptest::collection::vec((0usize..6, 0i64..5, proptest::collection::vec(0i64..12, 0..3)), 1..10),
        links in proptest::collection::vec((0i64..12, -10i64..10, 0u64..3), 0..12),
    ) {
        const CLASSES: [&str; 6] = ["Reroute", "PrimitiveNode", "KSampler", "PreviewImage", "VAEDecode", "group"];
        let nodes: Vec<Value> = nodes
            .iter()
            .enumerate()
            .map(|(id, (class, mode, inputs))| json!({
                "id": id,
                "type": CLASSES[*class],
                "mode": mode,
                "inputs": inputs.iter().map(|link| json!({"name": "samples", "type": "LATENT", "link": link})).collect::<Vec<_>>(),
                "widgets_values": [7, "fixed"],
            }))
            .collect();
        let links: Vec<Value> = links
            .iter()
            .map(|(id, origin, slot)| json!([id, origin, slot, 0, 0, "LATENT"]))
            .collect();
        let ui = json!({
            "nodes": nodes.clone(),
            "links": links.clone(),
            "definitions": {"subgraphs": [{"id": "group", "nodes": nodes, "links": links, "inputs": [{"name": "samples"}], "outputs": [{"linkIds": [1]}]}]},
        });
        let schemas = schemas_once();
        let _ = to_api(&ui, schemas);
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn schemas_once() -> &'static BTreeMap<String, NodeSchema> {
    static SCHEMAS: std::sync::OnceLock<BTreeMap<String, NodeSchema>> = std::sync::OnceLock::new();
    SCHEMAS.get_or_init(schemas)
}
