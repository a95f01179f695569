//! tark's channel widgets: each enabled channel plugin's `channel_widget_state`, with
//! tark's error markers (the UI shows them).

use std::path::Path;

use anyhow::Result;

use super::{InstalledPlugin, PluginHost, PluginRegistry, PluginType};

/// Widgets larger than this are replaced by the `widget_too_large` error (tark's limit).
const WIDGET_MAX_BYTES: usize = 16 * 1024;

/// One channel plugin's widget: its JSON text, or an error marker.
#[derive(Debug, Clone)]
pub struct PluginWidgetState {
    /// The channel plugin.
    pub plugin_id: String,
    /// The widget JSON text.
    pub payload: Option<String>,
    /// `load_failed`, `widget_too_large`, or the call's error text.
    pub error: Option<String>,
}

impl PluginWidgetState {
    fn failed(plugin: &InstalledPlugin, error: String) -> Self {
        PluginWidgetState {
            plugin_id: plugin.id().to_string(),
            payload: None,
            error: Some(error),
        }
    }
}

/// The widgets of every enabled channel plugin that has one. A plugin with project-local
/// data (`<project_root>/plugins/<id>/data`) is loaded with it. Blocking: tark calls it
/// from `spawn_blocking`.
pub fn collect_channel_widgets(project_root: &Path) -> Result<Vec<PluginWidgetState>> {
    let registry = PluginRegistry::new()?;
    let mut host = PluginHost::new()?;
    let mut widgets = Vec::new();
    for plugin in registry.by_type(PluginType::Channel) {
        if !plugin.enabled {
            continue;
        }
        let data_dir = project_root
            .join("plugins")
            .join(plugin.id())
            .join(crate::registry::DATA_DIR);
        let loaded = if data_dir.exists() {
            host.load_with_data_dir(plugin, data_dir)
        } else {
            host.load(plugin)
        };
        if let Err(e) = loaded {
            log::warn!("[plugin:{}] widget: {e:#}", plugin.id());
            widgets.push(PluginWidgetState::failed(plugin, "load_failed".into()));
            continue;
        }
        let Some(instance) = host.get_mut(plugin.id()) else {
            continue;
        };
        if !instance.has_channel_widget_state() {
            continue;
        }
        widgets.push(match instance.channel_widget_state() {
            Ok(payload) if payload.len() > WIDGET_MAX_BYTES => {
                PluginWidgetState::failed(plugin, "widget_too_large".into())
            }
            Ok(payload) => PluginWidgetState {
                plugin_id: plugin.id().to_string(),
                payload: Some(payload),
                error: None,
            },
            Err(e) => PluginWidgetState::failed(plugin, e.to_string()),
        });
        // Each widget's instance is dropped once read (tark keeps them to the end).
        let _ = host.unload(plugin.id());
    }
    Ok(widgets)
}
