// The worklist's only script (served from the server itself: the CSP allows no inline or outside script).
// Re-identification stays in this browser: the practice's look-up file (pseudonym -> local ID or NHS
// number) is read here with FileReader, joined onto the rows on the page and used to build the export
// CSV as a Blob. The file and the local IDs are never sent: the export request carries pseudonyms only
// (for the audit), and nothing is stored (a reload forgets the look-up).
"use strict";

(function () {
  const ID_COLUMNS = ["pseudonym", "person_id", "person id", "id"];
  const LOCAL_COLUMNS = ["local_id", "local id", "nhs_number", "nhs number"];
  let lookup = null; // Map pseudonym -> local ID, in memory only

  function parseCsv(text) {
    const rows = [];
    let row = [], field = "", quoted = false;
    text = text.replace(/^\ufeff/, "");
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
        else if (c === '"') { quoted = false; }
        else { field += c; }
      } else if (c === '"') { quoted = true; }
      else if (c === ",") { row.push(field); field = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") { i++; }
        row.push(field); rows.push(row); row = []; field = "";
      } else { field += c; }
    }
    if (field !== "" || row.length) { row.push(field); rows.push(row); }
    return rows.filter(r => r.some(v => v.trim() !== ""));
  }

  function readLookup(text) {
    const rows = parseCsv(text);
    if (!rows.length) { throw new Error("the file is empty"); }
    const header = rows[0].map(h => h.trim().toLowerCase());
    const idAt = header.findIndex(h => ID_COLUMNS.includes(h));
    const localAt = header.findIndex(h => LOCAL_COLUMNS.includes(h));
    if (idAt < 0 || localAt < 0) {
      throw new Error("it needs a pseudonym (or person_id) column and a local_id (or nhs_number) column");
    }
    const map = new Map();
    for (const r of rows.slice(1)) {
      const id = (r[idAt] || "").trim().toLowerCase();
      if (id) { map.set(id, (r[localAt] || "").trim()); }
    }
    return map;
  }

  function pseudonymOf(el) {
    const holder = el.closest("[data-pseudonym]");
    return holder ? holder.getAttribute("data-pseudonym").trim().toLowerCase() : "";
  }

  function fillLocalIds() {
    let found = 0;
    document.querySelectorAll(".local-id").forEach(cell => {
      const local = lookup ? lookup.get(pseudonymOf(cell)) : undefined;
      cell.textContent = local || "";
      if (local) { found++; }
    });
    return found;
  }

  function csvCell(value) {
    // A leading =, +, - or @ would be read as a formula by a spreadsheet: quote it as text.
    const text = /^[=+\-@]/.test(value) ? "'" + value : value;
    return /[",\n\r]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  async function exportSelected(practice) {
    const picked = Array.from(document.querySelectorAll("input.pick:checked")).map(b => b.value);
    const status = document.getElementById("lookup-status");
    if (!picked.length) { status.textContent = "Select the people to export first."; return; }
    const missing = picked.filter(p => !lookup.get(p.trim().toLowerCase()));
    if (missing.length) {
      status.textContent = missing.length + " selected people are not in your look-up file; nothing was exported.";
      return;
    }
    // The audit first (pseudonyms only); the local IDs never leave this browser.
    const body = new URLSearchParams();
    body.append("csrf", document.querySelector('meta[name="csrf"]').content);
    picked.forEach(p => body.append("pseudonym", p));
    const response = await fetch("/p/" + encodeURIComponent(practice) + "/export", {
      method: "POST", body: body, credentials: "same-origin",
    });
    if (!response.ok) { status.textContent = "The export was refused (" + response.status + ")."; return; }
    const lines = ["local_id"].concat(picked.map(p => csvCell(lookup.get(p.trim().toLowerCase()))));
    const blob = new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "practice-" + practice + "-selected-local-ids.csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
    status.textContent = "Exported " + picked.length + " local IDs.";
  }

  document.addEventListener("DOMContentLoaded", () => {
    const input = document.getElementById("lookup-file");
    const panel = document.getElementById("lookup-panel");
    const exportButton = document.getElementById("export");
    const all = document.getElementById("select-all");
    if (all) {
      all.addEventListener("change", () => {
        document.querySelectorAll("input.pick").forEach(b => { b.checked = all.checked; });
      });
    }
    if (!input || !panel) { return; }
    const status = document.getElementById("lookup-status");
    input.addEventListener("change", () => {
      const file = input.files && input.files[0];
      if (!file) { return; }
      const reader = new FileReader();
      reader.onload = () => {
        try {
          lookup = readLookup(String(reader.result));
          const found = fillLocalIds();
          status.textContent = "Look-up read: local IDs shown for " + found + " people on this page.";
          if (exportButton) { exportButton.disabled = false; }
        } catch (err) {
          lookup = null;
          status.textContent = "The look-up file cannot be used: " + err.message + ".";
        }
      };
      reader.readAsText(file);
    });
    if (exportButton) {
      exportButton.addEventListener("click", () => exportSelected(panel.getAttribute("data-practice")));
    }
  });
})();
