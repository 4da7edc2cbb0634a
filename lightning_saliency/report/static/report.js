// Interaction only: reads data-* attributes and writes textContent, never HTML.
(function () {
  "use strict";
  function showEpoch(section, position) {
    section.querySelectorAll(".epoch-view").forEach(function (view) {
      view.classList.toggle("current", view.dataset.epoch === String(position));
    });
    section.querySelectorAll(".summary-row").forEach(function (row) {
      row.classList.toggle("current", row.dataset.epoch === String(position));
    });
    var label = section.querySelector('.label-of[data-epoch="' + position + '"]');
    var output = section.querySelector(".epoch-label");
    if (label && output) { output.textContent = label.textContent; }
  }
  document.querySelectorAll("section.run").forEach(function (section) {
    var slider = section.querySelector(".epoch-slider");
    var sideBySide = section.querySelector(".side-by-side");
    if (slider) {
      slider.addEventListener("input", function () { showEpoch(section, slider.value); });
      showEpoch(section, slider.value);
    }
    if (sideBySide) {
      sideBySide.addEventListener("change", function () {
        section.classList.toggle("all-epochs", sideBySide.checked);
      });
    }
    var words = section.querySelector(".show-words");
    if (words) {
      words.addEventListener("change", function () {
        section.classList.toggle("words-view", words.checked);
      });
    }
  });
  document.body.classList.add("scripted");
  var chooser = document.getElementById("run-select");
  function showRun() {
    document.querySelectorAll("section.run").forEach(function (section) {
      section.hidden = chooser ? section.dataset.run !== chooser.value : false;
    });
  }
  if (chooser) { chooser.addEventListener("change", showRun); showRun(); }
  var inspector = document.getElementById("inspector");
  document.addEventListener("mouseover", function (event) {
    var token = event.target.closest ? event.target.closest(".tok") : null;
    if (!token) { inspector.classList.remove("visible"); return; }
    inspector.textContent = token.dataset.token + "  " + token.dataset.score;
    inspector.classList.add("visible");
  });
})();
