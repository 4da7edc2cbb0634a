// The "Saliency" tab: a run chooser and the run's report in a frame. Run names go into the page
// as textContent and into the URL through URLSearchParams only.
export async function render() {
  const style = document.createElement("style");
  style.textContent = `
    body { margin: 0; font: 14px "DejaVu Sans", sans-serif; }
    .bar { padding: 8px 16px; border-bottom: 1px solid #ddd; display: flex; gap: 12px; align-items: center; }
    iframe { border: 0; width: 100%; height: calc(100vh - 48px); }
  `;
  document.head.appendChild(style);
  const bar = document.createElement("div");
  bar.className = "bar";
  const label = document.createElement("label");
  label.textContent = "run ";
  const select = document.createElement("select");
  select.id = "saliency-run";
  label.appendChild(select);
  bar.appendChild(label);
  document.body.appendChild(bar);
  const frame = document.createElement("iframe");
  frame.id = "saliency-report";
  frame.title = "saliency report";
  document.body.appendChild(frame);

  const runs = await fetch("./runs").then((response) => response.json());
  if (runs.length === 0) {
    const note = document.createElement("p");
    note.textContent = "No saliency/epoch_*.json files under this logdir yet.";
    bar.appendChild(note);
    return;
  }
  for (const run of runs) {
    const option = document.createElement("option");
    option.value = run;
    option.textContent = run;
    select.appendChild(option);
  }
  const show = () => { frame.src = "./report?" + new URLSearchParams({run: select.value}); };
  select.addEventListener("change", show);
  select.value = runs[runs.length - 1];
  show();
}
