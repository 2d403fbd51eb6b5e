// Load before require.js and embed-amd.js. The widget manager inserts its CSS, whose Font Awesome
// fonts (for widget icons) it locates from the AMD module's URI; by default that URI points below the
// page's folder, where no fonts are. Map the module to this folder instead, where the fonts lie.
// (Over file:// browsers give the URL the origin "null", so the icons still fail there; the widgets
// themselves render either way.)
(function () {
  var here = document.currentScript.src.replace(/\/[^/]*(\?.*)?$/, "");
  window.__jupyter_widgets_assets_path__ = here + "/";
  window.require = window.require || { paths: { "@jupyter-widgets/html-manager/dist": here } };
})();
