// Prints the Khronos glTF validator's report of one .glb/.gltf file as JSON.
const fs = require("fs");
const validator = require("gltf-validator");
const path = process.argv[2];
validator
  .validateBytes(new Uint8Array(fs.readFileSync(path)), { maxIssues: 50 })
  .then((report) => console.log(JSON.stringify(report.issues)))
  .catch((err) => { console.error(String(err)); process.exit(1); });
