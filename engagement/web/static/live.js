// Poll the live analysis' rates once a second and show them beside the stream.
(function () {
  const line = document.getElementById("live-stats");
  async function refresh() {
    try {
      const stats = await (await fetch(line.dataset.url, {cache: "no-store"})).json();
      if (stats.error) line.textContent = stats.error;
      else if (!stats.running) line.textContent = "stopped";
      else if (stats.frames === undefined) line.textContent = "starting (loading the models)...";
      else {
        const score = stats.class_score_last_minute;
        line.textContent = `${stats.display_fps.toFixed(1)} fps shown, ${stats.analysis_fps.toFixed(1)} fps analysed, ` +
          `${stats.track_ids} people tracked, class score over the last minute: ${score === null ? "none yet" : score.toFixed(0) + " / 100"}`;
      }
    } catch (error) {
      line.textContent = "no answer from the server";
    }
  }
  refresh();
  setInterval(refresh, 1000);
})();
