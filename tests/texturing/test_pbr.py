"""PBR maps (issue 27): baked from views of the finished base colour with its own cameras and weights, a
tangent-space normal map in the MikkTSpace frame, and every map through inpainting, upscaling and the files.

The material model is not what these tests test: small analytic models defined here stand in for it, with outputs
known in advance (roughness = luminance, a fixed detail tilt, a constant albedo)."""

import json
import re
import struct
import warnings

import meshdream
import numpy as np
import pytest
import trimesh
from meshdream import Camera, MaterialModel, MaterialViews
from meshdream.geometry import uv_maps
from PIL import Image

from tests.conftest import khronos_issues
from tests.cube_meshes import cube_obj

SMALL = dict(n_views=4, view_resolution=64, texture_size=128, steps=2)


class Analytic(MaterialModel):
    """Roughness = luminance, metallic where the colour is bright, and a detail normal tilted `tilt` radians toward
    the view's +x (optionally albedo: a constant grey)."""

    name = "analytic"

    def __init__(self, tilt: float = 0.0, albedo: float | None = None):
        self.tilt, self.albedo = tilt, albedo
        self.makes_albedo = albedo is not None

    def estimate(self, images, masks, normals, prompt="", progress=None, cancel=None):
        lum = images.mean(-1)
        normal = np.zeros(images.shape, np.float32)
        normal[..., 0], normal[..., 2] = np.sin(self.tilt), np.cos(self.tilt)
        albedo = None if self.albedo is None else np.full(images.shape, self.albedo, np.float32)
        return MaterialViews(lum, (lum > 0.5).astype(np.float32), normal, albedo)


@pytest.fixture(scope="module")
def builtin():
    return meshdream.load_generator("builtin")


@pytest.fixture(scope="module")
def texture():
    rng = np.random.default_rng(0)
    return np.kron(rng.random((16, 16, 3)), np.ones((8, 8, 1))).astype(np.float32)  # 128², blocks of 8 texels


def _plane(uv_turn: bool):
    """A 2 x 2 plane in z = 0 facing +z; u along +x and v along +y, or (uv_turn) u along +y and v along -x."""
    x, y = np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1, 1, 9))
    vertices = np.stack([x.ravel(), y.ravel(), np.zeros(81)], 1)
    quads = np.array(
        [[r * 9 + c, r * 9 + c + 1, (r + 1) * 9 + c + 1, (r + 1) * 9 + c] for r in range(8) for c in range(8)]
    )
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    uv = (vertices[:, :2] + 1) / 2 * 0.9 + 0.05
    if uv_turn:
        uv = np.stack([uv[:, 1], 1 - uv[:, 0]], 1)
    plane = trimesh.Trimesh(vertices, faces, visual=trimesh.visual.TextureVisuals(uv=uv), process=False)
    return meshdream.load_mesh(plane)


@pytest.mark.parametrize("uv_turn, expected", [(False, (1.0, 0.0)), (True, (0.0, -1.0))])
def test_a_detail_normal_lands_in_tangent_space(uv_turn, expected):
    """A detail tilted toward the view's +x (world +x here) reads as +x in tangent space when u runs along +x, and
    as -y (minus the bitangent) when u runs along +y and v along -x."""
    mesh = _plane(uv_turn)
    tilt = 0.4
    camera = Camera.look_at((0, 0, 3), resolution=128)
    maps = meshdream.bake_materials(mesh, np.full((64, 64, 3), 0.5), material_model=Analytic(tilt), cameras=[camera])
    n = maps["normal"] * 2 - 1
    inside = uv_maps(mesh, 64).coverage
    inside &= np.roll(inside, 2, 0) & np.roll(inside, -2, 0) & np.roll(inside, 2, 1) & np.roll(inside, -2, 1)
    want = np.array([expected[0] * np.sin(tilt), expected[1] * np.sin(tilt), np.cos(tilt)])
    np.testing.assert_allclose(n[inside], np.broadcast_to(want, n[inside].shape), atol=0.02)


def test_maps_follow_the_estimates_texel_for_texel(spot, texture):
    maps = meshdream.bake_materials(spot, texture, material_model=Analytic(), view_resolution=128)
    assert set(maps) == {"base_color", "roughness", "metallic", "normal"}
    assert maps["base_color"] is not texture and np.array_equal(maps["base_color"], texture)
    assert maps["roughness"].shape == maps["metallic"].shape == (128, 128) and maps["normal"].shape == (128, 128, 3)
    assert all(m.dtype == np.float32 and m.min() >= 0 and m.max() <= 1 for m in maps.values())
    cover = uv_maps(spot, 128).coverage
    lum = texture.mean(-1)
    assert np.abs(maps["roughness"] - lum)[cover].mean() < 0.03  # roughness = luminance, where it was put
    assert np.abs(maps["metallic"] - (lum > 0.5))[cover].mean() < 0.1
    n = maps["normal"] * 2 - 1
    np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-5)
    assert np.median(n[cover][:, 2]) > 0.999  # no detail: flat, up to what low-resolution views blur
    # The gutter is padded from the charts: every uncovered texel equals the covered texel it copies.
    texels, source, _ = uv_maps(spot, 128).gutter
    for name in ("roughness", "metallic", "normal"):
        flat = maps[name].reshape(128 * 128, -1)
        np.testing.assert_array_equal(flat[texels], flat[source])


class TextureReader(Analytic):
    """Analytic, reading the texture itself (as the built-in model does); it keeps what it was given."""

    reads_texture = True

    def estimate(self, images, masks, normals, prompt="", progress=None, cancel=None):
        self.given = (images.copy(), masks.copy(), normals.copy())
        return super().estimate(images, masks, normals, prompt, progress, cancel)


def test_a_model_that_reads_the_texture_makes_the_maps_texel_for_texel(spot, texture):
    """The texture is the model's one view (covered texels, every geometric normal facing it), and its estimates
    are the maps as they come: no views, no resampling; the detail normal's x lies along u."""
    tilt = 0.3
    model = TextureReader(tilt)
    maps = meshdream.bake_materials(spot, texture, material_model=model)
    images, masks, normals = model.given
    cover = uv_maps(spot, 128).coverage
    assert np.array_equal(images[0], texture) and np.array_equal(masks[0], cover)
    assert np.all(normals[..., 2] == 1)
    lum = texture.mean(-1)
    np.testing.assert_allclose(maps["roughness"][cover], lum[cover], atol=1e-6)
    np.testing.assert_array_equal(maps["metallic"][cover], (lum > 0.5)[cover])
    n = maps["normal"][cover] * 2 - 1
    np.testing.assert_allclose(n, np.broadcast_to([np.sin(tilt), 0, np.cos(tilt)], n.shape), atol=1e-5)
    assert np.array_equal(maps["base_color"], texture)
    texels, source, _ = uv_maps(spot, 128).gutter
    for name in ("roughness", "metallic", "normal"):
        flat = maps[name].reshape(128 * 128, -1)
        np.testing.assert_array_equal(flat[texels], flat[source])
    delit = meshdream.bake_materials(spot, texture, material_model=TextureReader(albedo=0.25))
    np.testing.assert_allclose(delit["base_color"][cover], 0.25, atol=1e-6)


def test_pbr_adds_maps_and_leaves_the_texture_bit_for_bit(spot, builtin):
    plain = meshdream.texture_mesh(spot, "red brick", builtin, **SMALL)
    pbr = meshdream.texture_mesh(spot, "red brick", builtin, pbr=True, material_model=Analytic(), **SMALL)
    assert plain.maps == {} and plain.page_maps == {} and "materials" not in plain.timings
    assert np.array_equal(plain.texture, pbr.texture) and np.array_equal(plain.weight, pbr.weight)
    assert pbr.maps["base_color"] is pbr.texture and pbr.timings["materials"] > 0
    seen = pbr.weight > 0
    assert np.abs(pbr.maps["roughness"] - pbr.texture.mean(-1))[seen].mean() < 0.03


def test_delight_bakes_the_models_albedo(spot, texture):
    grey = Analytic(albedo=0.25)
    cover = uv_maps(spot, 128).coverage
    delit = meshdream.bake_materials(spot, texture, material_model=grey, view_resolution=128)
    np.testing.assert_allclose(delit["base_color"][cover], 0.25, atol=1e-4)
    kept = meshdream.bake_materials(spot, texture, material_model=grey, view_resolution=128, delight=False)
    assert np.array_equal(kept["base_color"], texture)
    with pytest.raises(meshdream.InvalidParameterError, match="albedo"):
        meshdream.bake_materials(spot, texture, material_model=Analytic(), delight=True)


def test_udim_pages_get_maps_per_tile_and_files_per_tile(tmp_path_factory, builtin, tmp_path):
    cube = cube_obj(tmp_path_factory.mktemp("udim") / "cube.obj", [(k, 0) for k in range(6)])
    mesh = meshdream.load_mesh(cube)
    result = meshdream.texture_mesh(mesh, "red brick", builtin, pbr=True, material_model=Analytic(), **SMALL)
    tiles = [str(1001 + k) for k in range(6)]
    assert sorted(result.page_maps) == tiles
    for tile in tiles:
        page = result.page_maps[tile]
        assert page["base_color"] is result.textures[tile]
        assert page["roughness"].shape == (128, 128) and page["normal"].shape == (128, 128, 3)
        # Aligned with its own page's base colour (views at 64 px blur it a little).
        assert np.corrcoef(page["roughness"].ravel(), page["base_color"].mean(-1).ravel())[0, 1] > 0.9
    assert result.maps["roughness"].shape == result.texture.shape[:2]
    alone = meshdream.bake_materials(mesh, result.textures, material_model=Analytic(), view_resolution=64)
    assert sorted(alone) == tiles and alone["1003"]["normal"].shape == (128, 128, 3)
    meshdream.save_textured(mesh, result, tmp_path / "cube.obj")
    mtl = (tmp_path / "cube.mtl").read_text()
    assert "map_Pr cube_roughness.<UDIM>.png" in mtl and "norm cube_normal.<UDIM>.png" in mtl
    for tile in tiles:
        saved = np.asarray(Image.open(tmp_path / f"cube_roughness.{tile}.png"), np.float32) / 255
        np.testing.assert_allclose(saved, result.page_maps[tile]["roughness"], atol=1 / 255)
    glb = meshdream.save_textured(mesh, result, tmp_path / "cube.glb")
    issues = khronos_issues(glb)
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]


def _gltf(path):
    data = path.read_bytes()
    size = struct.unpack_from("<I", data, 12)[0]
    gltf = json.loads(data[20 : 20 + size])
    binary = data[20 + size + 8 :]

    def accessor(k):
        a = gltf["accessors"][k]
        view = gltf["bufferViews"][a["bufferView"]]
        width = {"VEC2": 2, "VEC3": 3, "VEC4": 4}[a["type"]]
        start = view.get("byteOffset", 0) + a.get("byteOffset", 0)
        return np.frombuffer(binary, "<f4", a["count"] * width, start).reshape(-1, width)

    return gltf, accessor


@pytest.fixture(scope="module")
def spot_result(spot, texture):
    maps = meshdream.bake_materials(spot, texture, material_model=Analytic(0.3), view_resolution=128)
    return meshdream.TextureResult(maps["base_color"], np.ones((128, 128), np.float32), [], maps=maps)


def test_glb_with_maps_passes_the_validator_with_tangents(spot, spot_result, tmp_path):
    path = meshdream.save_textured(spot, spot_result, tmp_path / "spot.glb")
    gltf, accessor = _gltf(path)
    material = gltf["materials"][0]["pbrMetallicRoughness"]
    assert "baseColorTexture" in material and "metallicRoughnessTexture" in material
    assert "normalTexture" in gltf["materials"][0]
    attributes = gltf["meshes"][0]["primitives"][0]["attributes"]
    tangent, normal = accessor(attributes["TANGENT"]), accessor(attributes["NORMAL"])
    assert len(tangent) == len(accessor(attributes["POSITION"]))
    np.testing.assert_allclose(np.linalg.norm(tangent[:, :3], axis=1), 1.0, atol=1e-5)
    assert set(np.unique(tangent[:, 3])) <= {-1.0, 1.0}
    assert np.abs(np.einsum("nc,nc->n", tangent[:, :3], normal)).max() < 1e-4
    issues = khronos_issues(path)
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]


def test_a_texture_alone_is_written_as_before(spot, spot_result, tmp_path):
    """A bare texture array writes the same GLB as a TextureResult without maps, with no PBR maps in it."""
    a = meshdream.save_textured(spot, spot_result.texture, tmp_path / "a" / "spot.glb")
    plain = meshdream.TextureResult(spot_result.texture, spot_result.weight, [])
    b = meshdream.save_textured(spot, plain, tmp_path / "b" / "spot.glb")
    assert a.read_bytes() == b.read_bytes()
    gltf, _ = _gltf(a)
    assert "normalTexture" not in gltf["materials"][0] and "TANGENT" not in str(gltf["meshes"])


def test_obj_with_maps_writes_the_pbr_lines_and_images(spot, spot_result, tmp_path):
    path = meshdream.save_textured(spot, spot_result, tmp_path / "spot.obj")
    mtl = (tmp_path / "spot.mtl").read_text()
    for line in ("map_Kd spot.png", "map_Pr spot_roughness.png", "map_Pm spot_metallic.png", "norm spot_normal.png"):
        assert line in mtl
    saved = np.asarray(Image.open(tmp_path / "spot_normal.png"), np.float32) / 255
    np.testing.assert_allclose(saved, spot_result.maps["normal"], atol=1 / 255)
    obj = path.read_text()
    assert "\nvn " in obj and re.search(r"\nf \d+/\d+/\d+ \d+/\d+/\d+ \d+/\d+/\d+\n", obj)  # the baked normals
    with pytest.raises(meshdream.OutputExistsError):
        meshdream.save_textured(spot, spot_result, tmp_path / "spot.obj")


@pytest.mark.parametrize("suffix", [".glb", ".obj"])
def test_blender_imports_the_three_maps_connected(spot, spot_result, tmp_path, suffix):
    bpy = pytest.importorskip("bpy")
    path = meshdream.save_textured(spot, spot_result, tmp_path / f"spot{suffix}")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if suffix == ".glb":
        bpy.ops.import_scene.gltf(filepath=str(path))
    else:
        bpy.ops.wm.obj_import(filepath=str(path))
    material = next(m for m in bpy.data.materials if m.node_tree)
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")

    def image_behind(socket):
        node = socket.links[0].from_node
        while node.type != "TEX_IMAGE":
            node = next(i for i in node.inputs if i.links).links[0].from_node
        return node.image

    for socket in ("Base Color", "Roughness", "Metallic", "Normal"):
        assert bsdf.inputs[socket].links, f"{socket} is not connected after importing {path.name}"
    assert bsdf.inputs["Normal"].links[0].from_node.type == "NORMAL_MAP"
    names = {image_behind(bsdf.inputs[s]).filepath.rsplit("/", 1)[-1] for s in ("Roughness", "Normal")}
    assert suffix == ".glb" or names == {"spot_roughness.png", "spot_normal.png"}


def test_inpaint_and_upscale_carry_every_map(spot, spot_result):
    mask = np.zeros((128, 128), bool)
    mask[40:80, 40:80] = True
    filled = meshdream.inpaint_uv(spot, spot_result.maps, mask)
    assert set(filled) == set(spot_result.maps)
    cover = uv_maps(spot, 128).coverage
    hole = mask & cover
    np.testing.assert_allclose(filled["normal"][hole], np.broadcast_to([0.5, 0.5, 1.0], filled["normal"][hole].shape))
    assert not np.array_equal(filled["roughness"][hole], spot_result.maps["roughness"][hole])
    lo, hi = spot_result.maps["roughness"][cover & ~mask].min(), spot_result.maps["roughness"][cover & ~mask].max()
    assert lo - 1e-5 <= filled["roughness"][hole].min() and filled["roughness"][hole].max() <= hi + 1e-5

    up = meshdream.upscale_texture(spot, spot_result, scale=2, upscaler="lanczos")
    assert isinstance(up, meshdream.TextureResult) and up.texture is up.maps["base_color"]
    assert up.texture.shape == (256, 256, 3) and up.maps["roughness"].shape == (256, 256)
    assert up.weight.shape == (256, 256)
    np.testing.assert_allclose(np.linalg.norm(up.maps["normal"] * 2 - 1, axis=-1), 1.0, atol=1e-5)
    small = up.maps["roughness"].reshape(128, 2, 128, 2).mean((1, 3))
    assert np.abs(small - spot_result.maps["roughness"])[cover].mean() < 0.03


def test_restyle_makes_maps_too(spot, texture, builtin):
    result = meshdream.restyle_texture(
        spot,
        texture,
        "blue marble",
        generator=builtin,
        n_views=4,
        view_resolution=64,
        steps=2,
        pbr=True,
        material_model=Analytic(),
    )
    assert result.maps["base_color"] is result.texture
    seen = result.weight > 0
    assert np.abs(result.maps["roughness"] - result.texture.mean(-1))[seen].mean() < 0.05


def test_the_builtin_material_model_end_to_end(spot, builtin, tmp_path):
    """No material_model: the built-in generator's own (the built-in one), no warning; a brick is no metal."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", meshdream.MeshDreamWarning)
        result = meshdream.texture_mesh(spot, "red brick", builtin, pbr=True, **SMALL)
    assert set(result.maps) == {"base_color", "roughness", "metallic", "normal"}
    seen = result.weight > 0
    assert result.maps["metallic"][seen].mean() < 0.1
    n = result.maps["normal"] * 2 - 1
    np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-5)
    issues = khronos_issues(meshdream.save_textured(spot, result, tmp_path / "spot.glb"))
    assert issues["numErrors"] == 0, issues["messages"]


def test_a_family_without_a_material_model_gets_the_builtin_one_and_one_warning(spot, tiny):
    gen = meshdream.load_generator(tiny("sd15_controlnet"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = meshdream.texture_mesh(
            spot, "red brick", gen, pbr=True, n_views=2, view_resolution=64, texture_size=64, steps=1
        )
    about = [w for w in caught if issubclass(w.category, meshdream.MeshDreamWarning) and "material" in str(w.message)]
    assert len(about) == 1 and "built-in material model" in str(about[0].message)
    assert result.maps["roughness"].shape == (64, 64)


def test_a_material_model_that_cannot_load_fails_before_any_generation(spot, builtin, tmp_path):
    with pytest.raises(meshdream.MeshDreamError) as caught:
        meshdream.texture_mesh(spot, "red brick", builtin, pbr=True, material_model=tmp_path / "missing", **SMALL)
    assert "missing" in str(caught.value)
    with pytest.raises(meshdream.InvalidParameterError, match="albedo"):  # before generating, not after
        meshdream.texture_mesh(spot, "red brick", builtin, pbr=True, material_model=Analytic(), delight=True, **SMALL)


def test_a_prompt_per_material_gets_maps_per_material_in_every_file(tmp_path_factory, builtin, tmp_path):
    """Two materials on the same part of the UV square: a run and maps of their own each, written per material."""
    path = tmp_path_factory.mktemp("two") / "two.obj"
    cube = cube_obj(path, [((k % 3) / 3, 0) for k in range(6)], size=1 / 3, materials=["red"] * 3 + ["blue"] * 3)
    mesh = meshdream.load_mesh(cube)
    prompts = {"red": "red brick", "blue": "blue marble"}
    result = meshdream.texture_mesh(mesh, prompts, builtin, pbr=True, material_model=Analytic(), **SMALL)
    assert sorted(result.page_maps) == ["blue", "red"]
    assert result.maps["base_color"] is result.texture and result.maps["normal"].shape == result.texture.shape
    for name in ("red", "blue"):
        assert result.page_maps[name]["base_color"] is result.textures[name]
    meshdream.save_textured(mesh, result, tmp_path / "two.obj")
    mtl = (tmp_path / "two.mtl").read_text()
    assert "map_Pr two_red_roughness.png" in mtl and "norm two_blue_normal.png" in mtl
    saved = np.asarray(Image.open(tmp_path / "two_blue_metallic.png"), np.float32) / 255
    np.testing.assert_allclose(saved, result.page_maps["blue"]["metallic"], atol=1 / 255)
    issues = khronos_issues(meshdream.save_textured(mesh, result, tmp_path / "two.glb"))
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]


def test_sequential_with_a_refine_pass_gets_maps_at_the_final_size(spot, builtin):
    """A refine pass bakes at another size than the first pass: the maps are baked at the final one."""
    result = meshdream.texture_mesh(
        spot, "red brick", builtin, strategy="sequential", refine_scale=2, pbr=True, material_model=Analytic(), **SMALL
    )
    assert result.maps["roughness"].shape == result.texture.shape[:2] == (128, 128)
    seen = result.weight > 0
    assert np.abs(result.maps["roughness"] - result.texture.mean(-1))[seen].mean() < 0.05
