from django.contrib import admin
from django.urls import include, path

admin.site.login_template = "demo/login.html"  # the admin's sign-in page, with demo / demo on it

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("demo.urls")),
]
