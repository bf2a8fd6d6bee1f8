// Seat plan editor: clicks on the reference frame add corners to the seat being drawn; "Add seat" closes it.
// Coordinates are kept in the reference frame's own pixels, whatever size the canvas is shown at.
(() => {
  const image = document.getElementById("reference");
  const canvas = document.getElementById("seat-canvas");
  const context = canvas.getContext("2d");
  const message = document.getElementById("seat-message");
  const saved = JSON.parse(document.getElementById("plan-data").textContent);
  const seats = (saved.seats || []).map((seat) => ({ ...seat }));
  let corners = [];

  function draw() {
    if (!image.naturalWidth) return;
    context.drawImage(image, 0, 0);
    const line = Math.max(1, image.naturalWidth / 400);
    context.lineWidth = line;
    context.font = `${Math.max(10, image.naturalWidth / 60)}px sans-serif`;
    for (const seat of seats) {
      context.beginPath();
      seat.polygon.forEach(([x, y], i) => (i ? context.lineTo(x, y) : context.moveTo(x, y)));
      context.closePath();
      context.strokeStyle = seat.participating ? "#0072B2" : "#CC00CC";
      context.fillStyle = seat.participating ? "rgba(0, 114, 178, 0.15)" : "rgba(204, 0, 204, 0.35)";
      context.fill();
      context.stroke();
      context.fillStyle = "#fff";
      context.fillText(seat.name, seat.polygon[0][0] + 2 * line, seat.polygon[0][1] + 12 * line);
    }
    context.strokeStyle = "#E69F00";
    context.fillStyle = "#E69F00";
    context.beginPath();
    corners.forEach(([x, y], i) => (i ? context.lineTo(x, y) : context.moveTo(x, y)));
    context.stroke();
    for (const [x, y] of corners) context.fillRect(x - 2 * line, y - 2 * line, 4 * line, 4 * line);
  }

  function list() {
    const body = document.querySelector("#seat-list tbody");
    body.replaceChildren();
    seats.forEach((seat, index) => {
      const row = body.insertRow();
      row.insertCell().textContent = seat.name;
      row.insertCell().textContent = seat.polygon.length;
      row.insertCell().textContent = seat.participating ? "yes" : "no";
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "Remove";
      remove.addEventListener("click", () => { seats.splice(index, 1); list(); draw(); });
      row.insertCell().append(remove);
    });
  }

  canvas.addEventListener("click", (event) => {
    const box = canvas.getBoundingClientRect();
    corners.push([
      Math.round(((event.clientX - box.left) * image.naturalWidth) / box.width),
      Math.round(((event.clientY - box.top) * image.naturalHeight) / box.height),
    ]);
    draw();
  });
  document.getElementById("undo-point").addEventListener("click", () => { corners.pop(); draw(); });
  document.getElementById("add-seat").addEventListener("click", () => {
    const name = document.getElementById("seat-name").value.trim();
    if (corners.length < 3) { message.textContent = "a seat needs at least 3 corners"; return; }
    if (!name || seats.some((seat) => seat.name === name)) { message.textContent = "give the seat a new name"; return; }
    seats.push({ name, polygon: corners, participating: document.getElementById("seat-participating").checked });
    corners = [];
    message.textContent = `seat ${name} added; save the plan to keep it`;
    list();
    draw();
  });
  document.getElementById("save-plan").addEventListener("submit", () => {
    document.getElementById("plan-field").value = JSON.stringify({
      room: saved.room, width: image.naturalWidth, height: image.naturalHeight, seats,
    });
  });
  const ready = () => {
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const width = image.naturalWidth, height = image.naturalHeight;
    if (saved.width && (saved.width !== width || saved.height !== height)) {
      const savedShape = saved.width / saved.height;
      if (Math.abs(width / height - savedShape) <= 0.02 * savedShape) {  // the same camera at another resolution
        const sx = width / saved.width, sy = height / saved.height;
        for (const seat of seats) seat.polygon = seat.polygon.map(([x, y]) => [Math.round(x * sx), Math.round(y * sy)]);
      } else {  // another camera or framing: the saved seats would land in the wrong places
        seats.length = 0;
        message.textContent = `the saved plan was drawn on a ${saved.width}x${saved.height} frame, another camera or framing: ` +
          "draw the seats again on this one (saving replaces the plan)";
        list();
      }
    }
    draw();
  };
  const unavailable = () => {
    message.textContent = "the reference frame could not be loaded (a session without its annotated video?): " +
      "pick another session or upload a video";
    document.querySelector("#save-plan button").disabled = true;
  };
  if (image.complete && image.naturalWidth) ready(); else {
    image.addEventListener("load", ready);
    image.addEventListener("error", unavailable);
    if (image.complete) unavailable();  // failed before this script ran
  }
  list();
})();
