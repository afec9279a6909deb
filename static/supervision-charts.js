// Draws the delivery charts of the supervision page with Chart.js.
// The numbers come from the JSON endpoint named in data-chart-url; the
// tables under the charts carry the same numbers for screen readers.
(function () {
  "use strict";

  const COLORS = {
    sent: "#1c7c43",
    retried: "#d69e2e",
    failed: "#b42318",
    rate: "#1f5fae",
    threshold: "#8a5a00",
  };
  const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");
  const percent = new Intl.NumberFormat("de-DE", {
    style: "percent",
    maximumFractionDigits: 1,
  });

  function baseOptions() {
    return {
      locale: "de-DE",
      responsive: true,
      maintainAspectRatio: false,
      animation: reducedMotion.matches ? false : { duration: 300 },
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom" } },
    };
  }

  function titleOf(data) {
    // Tooltips show the long label, e.g. "04.12.2026 14:00–15:00".
    return (items) => (items.length ? data.titles[items[0].dataIndex] : "");
  }

  function countsChart(canvas, data) {
    const options = baseOptions();
    options.scales = {
      x: { stacked: true, grid: { display: false } },
      y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } },
    };
    options.plugins.tooltip = { callbacks: { title: titleOf(data) } };
    return new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: [
          { label: "Gesendet", data: data.sent, backgroundColor: COLORS.sent },
          { label: "Wiederholt", data: data.retried, backgroundColor: COLORS.retried },
          { label: "Fehlgeschlagen", data: data.failed, backgroundColor: COLORS.failed },
        ],
      },
      options: options,
    });
  }

  function rateChart(canvas, data) {
    const options = baseOptions();
    options.spanGaps = true;
    options.scales = {
      x: { grid: { display: false } },
      y: {
        beginAtZero: true,
        suggestedMax: Math.max(data.threshold * 2, 0.1),
        ticks: { callback: (value) => percent.format(value) },
      },
    };
    options.plugins.tooltip = {
      callbacks: {
        title: titleOf(data),
        label: (item) =>
          item.dataset.label + ": " + (item.raw === null ? "–" : percent.format(item.raw)),
      },
    };
    return new Chart(canvas, {
      type: "line",
      data: {
        labels: data.labels,
        datasets: [
          {
            label: "Fehlerquote",
            data: data.failure_rate,
            borderColor: COLORS.rate,
            backgroundColor: COLORS.rate,
            tension: 0.2,
          },
          {
            label: "Warnschwelle",
            data: data.labels.map(() => data.threshold),
            borderColor: COLORS.threshold,
            borderDash: [6, 4],
            pointRadius: 0,
            borderWidth: 1.5,
          },
        ],
      },
      options: options,
    });
  }

  const builders = { counts: countsChart, rate: rateChart };

  async function drawCharts(section) {
    try {
      const response = await fetch(section.dataset.chartUrl, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      const data = await response.json();
      section.querySelectorAll("canvas[data-chart]").forEach((canvas) => {
        const existing = Chart.getChart(canvas);
        if (existing) {
          existing.destroy();
        }
        builders[canvas.dataset.chart](canvas, data);
      });
      section.dataset.chartsReady = "true";
    } catch (error) {
      const message = section.querySelector(".chart-error");
      if (message) {
        message.hidden = false;
      }
    }
  }

  htmx.onLoad((element) => {
    const sections = element.matches("[data-chart-url]")
      ? [element]
      : element.querySelectorAll("[data-chart-url]");
    sections.forEach(drawCharts);
  });

  // Free the charts of a section that htmx replaces.
  document.body.addEventListener("htmx:beforeCleanupElement", (event) => {
    if (event.target.matches && event.target.matches("canvas[data-chart]")) {
      const chart = Chart.getChart(event.target);
      if (chart) {
        chart.destroy();
      }
    }
  });
})();
