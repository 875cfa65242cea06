// Node-RED settings of the peer benchmark: stock defaults except where a
// headless benchmark needs otherwise (plain-text credentials file, port from
// the environment, quiet console).
module.exports = {
    flowFile: "flows.json",
    credentialSecret: false,
    uiPort: Number(process.env.PORT || 1880),
    uiHost: "127.0.0.1",
    logging: { console: { level: "warn", metrics: false, audit: false } },
    editorTheme: { tours: false },
};
